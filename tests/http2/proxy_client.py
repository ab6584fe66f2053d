"""An HTTP/2 proxy client that is not gost's (the `h2` package over the
standard library's TLS), for tests/tests/http2.rs. Runs the steps of a
plan (JSON, argv[2]) on one HTTP/2 connection to 127.0.0.1:argv[1] and
prints what each step saw as JSON."""

import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events

port = int(sys.argv[1])
plan = json.loads(sys.argv[2])

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                       server_hostname="localhost")
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
sock.sendall(conn.data_to_send())

streams = {}  # name -> stream id
seen = {}  # stream id -> {"status", "headers", "data", "ended", "reset"}


def state(sid):
    return seen.setdefault(sid, {"status": None, "headers": {}, "data": b"",
                                 "ended": False, "reset": False})


def pump(done):
    while not done():
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("connection closed")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                st = state(ev.stream_id)
                for k, v in ev.headers:
                    k, v = k.decode(), v.decode()
                    if k == ":status":
                        st["status"] = int(v)
                    else:
                        st["headers"][k] = v
            elif isinstance(ev, h2.events.DataReceived):
                state(ev.stream_id)["data"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                state(ev.stream_id)["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                state(ev.stream_id)["reset"] = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise RuntimeError("GOAWAY")
        sock.sendall(conn.data_to_send())


def auth_headers(step):
    if "auth" in step:
        return [("proxy-authorization", step["auth"])]
    return []


out = {}
for step in plan:
    kind, name = step["do"], step["name"]
    if kind == "connect":
        sid = conn.get_next_available_stream_id()
        streams[name] = sid
        conn.send_headers(sid, [(":method", "CONNECT"), (":authority", step["target"])]
                          + auth_headers(step))
        sock.sendall(conn.data_to_send())
        pump(lambda: state(sid)["status"] is not None or state(sid)["reset"])
        st = state(sid)
        out[name] = {"status": st["status"], "headers": st["headers"]}
    elif kind == "echo":
        sid = streams[name]
        st = state(sid)
        st["data"] = b""
        msg = step["data"].encode()
        conn.send_data(sid, msg)
        sock.sendall(conn.data_to_send())
        pump(lambda: len(st["data"]) >= len(msg) or st["reset"] or st["ended"])
        out[step.get("as", name + ".echo")] = st["data"].decode(errors="replace")
    elif kind == "reset":
        conn.reset_stream(streams[name])
        sock.sendall(conn.data_to_send())
    elif kind == "get":
        sid = conn.get_next_available_stream_id()
        streams[name] = sid
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                (":authority", step["authority"]), (":path", step["path"])]
                          + auth_headers(step), end_stream=True)
        sock.sendall(conn.data_to_send())
        pump(lambda: state(sid)["ended"] or state(sid)["reset"])
        st = state(sid)
        out[name] = {"status": st["status"], "headers": st["headers"],
                     "body": st["data"].decode(errors="replace")}
print(json.dumps(out))
