"""A gost handler plugin in Python: the token-tunnel protocol of the Rust
example (plugins/token-tunnel). The client sends one line,

    TUNNEL <token> <host:port>\\n

and gets `OK\\n` once the target is connected; then the host relays the
bytes both ways natively. Any error gets `ERR <reason>\\n`. Tokens come
from the config: `config: {tokens: [s3cret, ...]}`.

Build (componentize-py from PyPI, pinned in ../requirements.txt):
    componentize-py -d ../../../wit -w handler componentize app -o tunnel.wasm
"""

import json

import wit_world
from wit_world.imports import network, runtime, types
from componentize_py_types import Err

# A request line longer than this is not our protocol.
MAX_LINE = 1024

TOKENS = None


def tokens():
    global TOKENS
    if TOKENS is None:
        TOKENS = set(json.loads(runtime.config() or "{}").get("tokens", []))
    return TOKENS


def refuse(client, why):
    try:
        client.write(("ERR %s\n" % why).encode())
    except Err:
        pass
    return wit_world.Outcome_Fail(why)


class WitWorld(wit_world.WitWorld):
    def handle(self, info, client):
        buf = b""
        while b"\n" not in buf:
            if len(buf) >= MAX_LINE:
                return refuse(client, "request line too long")
            try:
                data = client.read(MAX_LINE - len(buf))
            except Err:
                return wit_world.Outcome_Done()
            if not data:
                return wit_world.Outcome_Done()
            buf += data
        line, early = buf.split(b"\n", 1)
        fields = line.decode("utf-8", "replace").split()
        if len(fields) != 3 or fields[0] != "TUNNEL":
            return refuse(client, "bad request line")
        _, token, target = fields
        if token not in tokens():
            return refuse(client, "bad token")
        try:
            upstream = network.dial("tcp", target)
        except Err as e:
            return refuse(client, str(e.value))
        if runtime.log_enabled(types.Level.DEBUG):
            runtime.log(types.Level.DEBUG, "%s -> %s" % (info.client_addr(), target))
        # The reply and the bytes read past the request line are written
        # by the host before it relays: no host call of their own.
        return wit_world.Outcome_Relay(
            wit_world.RelayStreams(
                client=client, upstream=upstream, to_client=b"OK\n", to_upstream=early
            )
        )
