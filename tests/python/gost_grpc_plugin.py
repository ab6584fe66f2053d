"""A GOST gRPC plugin server for the tests, written from GOST's definitions
(go-gost/plugin's protos, copied into gost_plugin.proto beside this file,
and its example servers), with grpcio: an implementation of gRPC and
protobuf that is not the one gost-rs uses.

Usage: gost_grpc_plugin.py REQUEST_LOG MODE [CERT KEY]
Compiles gost_plugin.proto with grpcio-tools into a folder next to
REQUEST_LOG, prints the port it listens on (127.0.0.1), then serves until
killed; with CERT and KEY (PEM files) it serves over TLS. Every call is
appended to REQUEST_LOG as one JSON line {"method", "token", "body"}.

MODE is how every method answers:
  normal   the decisions below
  slow     sleeps 3 s, then answers as normal
  garbage  answers bytes that are not a protobuf message
  huge     answers a valid message of 1 MiB

Decisions (the same as gost_http_plugin.py's):
  Authenticate  users alice:secret (id "id-alice") and bob:pw (id "id-bob")
  Admit         ok when the client address is on 127.0.0.1 and the service
                name does not start with "deny"
  Bypass        ok (bypassed) when the target host starts with "bypassed."
  Lookup, Resolve  "echo.test" -> 127.0.0.1, others ok false
  GetRule       "example.local" -> INGRESS_ENDPOINT, others no endpoint
  SetRule       ok
  Record        ok
"""

import json
import os
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import json_format
from grpc_tools import protoc

INGRESS_ENDPOINT = "6be39003-f4fa-49e4-a6ef-1997684d160e"
LOG_LOCK = threading.Lock()
HERE = os.path.dirname(os.path.abspath(__file__))


def compile_proto(out):
    os.makedirs(out, exist_ok=True)
    rc = protoc.main(["protoc", "-I", HERE, "--python_out", out,
                      os.path.join(HERE, "gost_plugin.proto")])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    import gost_plugin_pb2
    return gost_plugin_pb2


def decide(pb, method, req):
    if method == "Authenticate":
        users = {"alice": "secret", "bob": "pw"}
        ok = users.get(req.username) == req.password
        return pb.AuthenticateReply(ok=ok, id="id-" + req.username if ok else "")
    if method == "Admit":
        ok = req.addr.startswith("127.0.0.1:") and not req.service.startswith("deny")
        return pb.AdmissionReply(ok=ok)
    if method == "Bypass":
        return pb.BypassReply(ok=req.addr.startswith("bypassed."))
    if method in ("Lookup", "Resolve"):
        reply = pb.LookupReply if method == "Lookup" else pb.ResolveReply
        if req.host == "echo.test":
            return reply(ok=True, ips=["127.0.0.1", "not-an-ip"])
        return reply(ok=False)
    if method == "GetRule":
        host = req.host.rsplit(":", 1)[0] if ":" in req.host else req.host
        return pb.GetRuleReply(endpoint=INGRESS_ENDPOINT if host == "example.local" else "")
    if method == "SetRule":
        return pb.SetRuleReply(ok=True)
    if method == "Record":
        return pb.RecordReply(ok=True)
    raise ValueError(method)


def huge():
    # Field 2 (a string) of 1 MiB: a well-formed message of every GOST
    # reply type whose field 2 is a string or unknown.
    n = 1 << 20
    varint = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            varint.append(b | 0x80)
        else:
            varint.append(b)
            break
    return b"\x12" + bytes(varint) + b"x" * (1 << 20)


def handlers(pb, mode, log):
    file = pb.DESCRIPTOR
    out = []
    for service in file.services_by_name.values():
        methods = {}
        for m in service.methods:
            request = getattr(pb, m.input_type.name)

            def behave(req, context, name=m.name, full="/proto.%s/%s" % (service.name, m.name)):
                token = dict(context.invocation_metadata()).get("token", "")
                body = json_format.MessageToDict(req, preserving_proto_field_name=True)
                with LOG_LOCK, open(log, "a") as f:
                    f.write(json.dumps({"method": full, "token": token, "body": body}) + "\n")
                if mode == "slow":
                    time.sleep(3)
                return decide(pb, name, req)

            if mode == "garbage":
                serialize = lambda _reply: b"\xff\xff\xff\xff\xff"
            elif mode == "huge":
                serialize = lambda _reply: huge()
            else:
                serialize = lambda reply: reply.SerializeToString()
            methods[m.name] = grpc.unary_unary_rpc_method_handler(
                behave,
                request_deserializer=request.FromString,
                response_serializer=serialize,
            )
        out.append(grpc.method_handlers_generic_handler("proto." + service.name, methods))
    return out


def main():
    log, mode = sys.argv[1], sys.argv[2]
    pb = compile_proto(os.path.join(os.path.dirname(os.path.abspath(log)), "pb"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    for h in handlers(pb, mode, log):
        server.add_generic_rpc_handlers((h,))
    if len(sys.argv) > 4:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
