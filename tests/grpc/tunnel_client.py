"""A gRPC client of GOST's tunnel, built from its proto with grpcio-tools:
speaks SOCKS5 through the tunnel to an echo server, or tries one of the
bad inputs, and prints one line saying what happened.

usage: tunnel_client.py GENDIR ADDR MODE [--ca FILE] [--path /svc/method]
           [--target HOST:PORT]
modes: echo (SOCKS5 CONNECT, then a round trip), oversize (a message over
4 MiB), unknown-path, stall (CONNECT and never read)
"""

import argparse
import queue
import socket
import struct
import sys
import time

args = argparse.ArgumentParser()
args.add_argument("gendir")
args.add_argument("addr")
args.add_argument("mode")
args.add_argument("--ca")
args.add_argument("--path", default="/GostTunel/Tunnel")
args.add_argument("--target", default="")
args.add_argument("--size", type=int, default=100000)
a = args.parse_args()
sys.path.insert(0, a.gendir)

import grpc  # noqa: E402
import gost_pb2  # noqa: E402
import gost_pb2_grpc  # noqa: E402

if a.ca:
    creds = grpc.ssl_channel_credentials(open(a.ca, "rb").read())
    channel = grpc.secure_channel(
        a.addr, creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )
else:
    channel = grpc.insecure_channel(a.addr)

if a.path == "/GostTunel/Tunnel":
    call = gost_pb2_grpc.GostTunelStub(channel).Tunnel
else:
    call = channel.stream_stream(
        a.path,
        request_serializer=gost_pb2.Chunk.SerializeToString,
        response_deserializer=gost_pb2.Chunk.FromString,
    )

out = queue.Queue()


def requests():
    while True:
        item = out.get()
        if item is None:
            return
        yield gost_pb2.Chunk(data=item)


responses = call(requests(), timeout=20)
buf = bytearray()


def read_exact(n):
    while len(buf) < n:
        buf.extend(next(responses).data)
    data = bytes(buf[:n])
    del buf[:n]
    return data


def socks5_connect(target):
    host, port = target.rsplit(":", 1)
    out.put(b"\x05\x01\x00")
    assert read_exact(2) == b"\x05\x00"
    out.put(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack(">H", int(port)))
    reply = read_exact(10)
    assert reply[1] == 0, reply


try:
    if a.mode == "echo":
        socks5_connect(a.target)
        payload = bytes(i % 251 for i in range(a.size))
        # Several messages of odd sizes, read back as one stream.
        for at in range(0, len(payload), 7777):
            out.put(payload[at : at + 7777])
        got = read_exact(len(payload))
        assert got == payload, "echo mismatch"
        out.put(None)
        rest = b"".join(c.data for c in responses)
        print("ok", len(got), len(rest))
    elif a.mode == "oversize":
        out.put(b"x" * (4 * 1024 * 1024 + 1))
        for _ in responses:
            pass
        print("no error")
    elif a.mode in ("unknown-path",):
        out.put(b"\x05\x01\x00")
        for _ in responses:
            pass
        print("no error")
    elif a.mode == "stall":
        socks5_connect(a.target)
        out.put(b"go")
        # Hold the call open without reading what the target floods.
        time.sleep(3)
        responses.cancel()
        print("stalled")
    else:
        sys.exit("unknown mode " + a.mode)
except grpc.RpcError as e:
    print("rpc error", e.code().name, e.details())
