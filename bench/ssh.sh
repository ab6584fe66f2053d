#!/usr/bin/env bash
# SSH port forwarding benchmark on loopback: OpenSSH's `ssh -D` (dynamic
# forwarding, a SOCKS5 port) against gost-rs's sshd service and against
# OpenSSH's own sshd, and gost-rs's relay over its `ssh` tunnel transport
# (a gost client's socks5 port in place of `ssh -D`), in ONE run with
# interleaved rounds, reported as medians with ratios to OpenSSH's sshd.
# See bench/README.md.
#
#   bench/ssh.sh            full run (3 rounds, 5 s per bulk transfer)
#   bench/ssh.sh --quick    smoke run (2 rounds, 2 s)
#
# The SSH server runs pinned to core 0; the ssh client, the load generator
# and the target servers share core 1. Both servers get the same client,
# key (Ed25519, made for this run) and cipher negotiation, so what differs
# is the server's work per byte.

set -uo pipefail

ALL_SYSTEMS="gost-sshd openssh-sshd gost-relay-ssh"

usage() {
    cat <<EOF2
usage: bench/ssh.sh [options]
  --quick            short smoke run (2 rounds, 2 s per transfer)
  --rounds N         repetitions; every round runs every system in turn (default 3)
  --systems "LIST"   subset/order of: $ALL_SYSTEMS (default: all)
  --no-build         use the existing binaries
  -h, --help         this text
environment:
  CARGO_TARGET_DIR   where the release binaries are (default: <repo>/target)
  GOST_BIN           gost binary to test, not built (default: \$CARGO_TARGET_DIR/release/gost)
  LOADGEN_BIN        load generator binary, not built (default: \$CARGO_TARGET_DIR/release/loadgen)
EOF2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
parse_args "$@"

if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-2}; BULK_S=2
else
    ROUNDS=${ROUNDS:-3}; BULK_S=5
fi

bench_paths ssh
build_binaries gost-sshd gost-relay-ssh

for tool in /usr/bin/ssh /usr/sbin/sshd /usr/bin/ssh-keygen; do
    if [ ! -x "$tool" ]; then
        case $tool in */sshd) apt_install openssh-server ;; *) apt_install openssh-client ;; esac
    fi
done
if has openssh-sshd && [ ! -x /usr/sbin/sshd ]; then
    log "WARNING: /usr/sbin/sshd (package openssh-server) not available; skipping openssh-sshd"
    drop_system openssh-sshd
fi

setup_run ssh
chmod 755 "$TMP"
ssh-keygen -q -t ed25519 -N "" -f "$TMP/host_key" -C bench-host || exit 1
ssh-keygen -q -t ed25519 -N "" -f "$TMP/user_key" -C bench-user || exit 1
cp "$TMP/user_key.pub" "$TMP/authorized_keys"
USER_NAME=$(id -un)
# OpenSSH's privilege separation wants this directory (its service
# script makes it; nothing here runs that).
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd

start_targets

# start_server SYSTEM: the SSH server pinned to the proxy core on a fresh
# port; sets PROXY_PID and PROXY_PORT.
start_server() {
    local sys=$1
    PROXY_PORT=$("$LG" freeport) || return 1
    case "$sys" in
        gost-sshd | gost-relay-ssh)
            local scheme=sshd
            [ "$sys" = gost-relay-ssh ] && scheme=relay+ssh
            taskset -c "$PROXY_CPU" "$GOST" \
                -L "$scheme://127.0.0.1:$PROXY_PORT?authorizedKeys=$TMP/authorized_keys&privateKeyFile=$TMP/host_key" \
                >"$TMP/$sys.log" 2>&1 &
            ;;
        openssh-sshd)
            cat >"$TMP/sshd_config" <<EOF3
Port $PROXY_PORT
ListenAddress 127.0.0.1
HostKey $TMP/host_key
AuthorizedKeysFile $TMP/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel ERROR
EOF3
            taskset -c "$PROXY_CPU" /usr/sbin/sshd -D -e -f "$TMP/sshd_config" >"$TMP/$sys.log" 2>&1 &
            ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_listening "$PROXY_PID" "$PROXY_PORT" || { note_skip "$sys" "$(start_failure "$TMP/$sys.log")"; return 1; }
}

# start_client SYSTEM: `ssh -N -D` on the load core, logged in with the
# run's key (for gost-relay-ssh a gost client's socks5 port whose node is
# relay over ssh with the same key); sets CLIENT_PID and CLIENT_PORT.
start_client() {
    CLIENT_PORT=$("$LG" freeport) || return 1
    if [ "$1" = gost-relay-ssh ]; then
        taskset -c "$LOAD_CPU" "$GOST" -L "socks5://127.0.0.1:$CLIENT_PORT" \
            -F "relay+ssh://$USER_NAME@127.0.0.1:$PROXY_PORT?privateKeyFile=$TMP/user_key" \
            >>"$TMP/ssh-client.log" 2>&1 &
        CLIENT_PID=$!
        PIDS+=("$CLIENT_PID")
        wait_listening "$CLIENT_PID" "$CLIENT_PORT"
        return
    fi
    taskset -c "$LOAD_CPU" /usr/bin/ssh -N -F /dev/null -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o IdentitiesOnly=yes \
        -o IdentityAgent=none -i "$TMP/user_key" -p "$PROXY_PORT" -l "$USER_NAME" \
        -D "127.0.0.1:$CLIENT_PORT" 127.0.0.1 2>>"$TMP/ssh-client.log" &
    CLIENT_PID=$!
    PIDS+=("$CLIENT_PID")
    wait_listening "$CLIENT_PID" "$CLIENT_PORT"
}

run_system() {
    local sys=$1 round=$2 dir
    log "== round $round: $sys"
    start_server "$sys" || return
    if start_client "$sys"; then
        for dir in upload download; do
            local args=(--socks5 "127.0.0.1:$CLIENT_PORT" --target "127.0.0.1:$SINK_PORT"
                --watch-pid "$PROXY_PID" --label "$sys" --round "$round" --seconds "$BULK_S")
            [ "$dir" = download ] && args=(--socks5 "127.0.0.1:$CLIENT_PORT" --target "127.0.0.1:$SOURCE_PORT"
                --watch-pid "$PROXY_PID" --label "$sys" --round "$round" --seconds "$BULK_S" --download)
            client bulk "${args[@]}" || log "  bulk $dir failed"
        done
        stop_pid "$CLIENT_PID"
    else
        note_skip "$sys" "ssh -D did not start: $(tail -n 1 "$TMP/ssh-client.log")"
    fi
    stop_pid "$PROXY_PID"
}

# The download target: a source server beside the sink.
SOURCE_PORT=$("$LG" freeport)
taskset -c "$LOAD_CPU" "$LG" server --listen "127.0.0.1:$SOURCE_PORT" --mode source \
    --max-seconds 3600 2>>"$TMP/servers.log" &
PIDS+=($!)
"$LG" waitport --target "127.0.0.1:$SOURCE_PORT" || exit 1

{
    header_common "gost-rs SSH port forwarding benchmark"
    echo "pinning: SSH server on core $PROXY_CPU; ssh client (-D), load generator and target servers on core $LOAD_CPU (taskset)"
    echo "systems: $SYSTEMS; rounds: $ROUNDS (interleaved, order rotated each round)"
    echo "bulk: 1 stream through ssh -D (gost-relay-ssh: a gost socks5 client) for ${BULK_S} s, upload then download; $(/usr/bin/ssh -V 2>&1)"
    echo "keys: Ed25519 host and user keys made with ssh-keygen for this run; ciphers as OpenSSH's client and each server negotiate"
    echo "gost: $(shown "$GOST")"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$TMP/header.txt"
cat "$TMP/header.txt" >&2
: >"$TMP/results.jsonl"

run_rounds

TABLE=$(
    echo "Reference: openssh-sshd. Both serve the same OpenSSH client's dynamic forwarding; the client's own encryption shares the load core."
    echo
    "$LG" report "$TMP/results.jsonl" --baseline openssh-sshd --reference openssh-sshd 2>/dev/null ||
        echo "(no results)"
    skipped_text
)
write_report "$TABLE"
