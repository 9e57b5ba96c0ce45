"""Benchmark: what a client connection costs a bare `grpc.aio` server, per connection and per open stream.

The control plane's cost per node is mostly gRPC's and TLS's, not its own
code's; this measures that part alone: a server (mutual TLS with the cluster
CA's certificates, as the API port; `--plaintext` without), `--clients`
clients each on its own connection with `--streams` streams open (half
server-streaming, half bidirectional, each having carried one message) and
three unary calls made, and the server's RSS before and after.

    .venv/bin/python bench/grpc_connection_memory.py [--clients 300] [--streams 4] [--options JSON]

`--options` adds server options as JSON pairs (e.g. '[["grpc.tsi.max_frame_size", 4096]]').
Prints KB per connection; writes bench/results/grpc_connection_memory.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from harness import free_port, machine, wait_for, write_result

from controlplane.auth.ca import ClusterCA
from corral.common.pki.certs import DEFAULT_NODE_LIFETIME, Identity, Role


async def _watch(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"x" * 100
    await asyncio.Event().wait()


async def _echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message


async def _unary(request: bytes, context: Any) -> bytes:
    return b"ok"


async def serve(port: int, pki: Path, options: list[tuple[str, Any]], plaintext: bool) -> None:
    server = grpc.aio.server(options=options)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Watch": grpc.unary_stream_rpc_method_handler(_watch),
        "Echo": grpc.stream_stream_rpc_method_handler(_echo),
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Bench", handlers),))
    if plaintext:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        keys = json.loads((pki / "server.json").read_text())
        credentials = grpc.ssl_server_credentials(
            [(keys["key"].encode(), keys["chain"].encode())],
            root_certificates=keys["ca"].encode(),
            require_client_auth=True,
        )
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    (pki / "ready").touch()
    await server.wait_for_termination()


async def connect(port: int, pki: Path, clients: int, streams: int, plaintext: bool) -> None:
    calls: list[Any] = []  # the calls and channels, kept: a channel no one holds is closed
    for i in range(clients):
        options = [("bench.client", i)]  # its own connection, not a shared subchannel
        if plaintext:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        else:
            keys = json.loads((pki / "client.json").read_text())
            credentials = grpc.ssl_channel_credentials(keys["ca"].encode(), keys["key"].encode(), keys["cert"].encode())
            channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)
        calls.append(channel)
        for j in range(streams):
            if j % 2 == 0:
                watching: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream("/bench.Bench/Watch")
                watch = watching(b"")
                await watch.read()
                calls.append(watch)
            else:
                echo: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream("/bench.Bench/Echo")()
                await echo.write(b"y" * 2000)
                await echo.read()
                calls.append(echo)
        for _ in range(3):
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/bench.Bench/Unary")
            await unary(b"z" * 500)
    (pki / "connected").touch()
    await asyncio.Event().wait()


def rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settle(pid: int) -> float:
    last = rss(pid)
    for _ in range(10):
        time.sleep(1)
        now = rss(pid)
        if abs(now - last) <= last * 0.005:
            return now
        last = now
    return last


def keys(pki: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = ClusterCA.ephemeral(now)
    serving = ca.serving(["127.0.0.1"], now)
    client = ca.client_credentials(Identity(Role.NODE, "bench"), now, DEFAULT_NODE_LIFETIME)
    ca_pem = ca.pem.decode()
    server = {"key": serving.key.decode(), "chain": serving.chain.decode(), "ca": ca_pem}
    (pki / "server.json").write_text(json.dumps(server))
    (pki / "client.json").write_text(
        json.dumps({"key": client.key.decode(), "cert": client.cert.decode(), "ca": ca_pem})
    )


def measure(args: argparse.Namespace, pki: Path) -> dict[str, object]:
    keys(pki)
    port = free_port()
    common = [str(port), str(pki), *(["--plaintext"] if args.plaintext else [])]
    server = subprocess.Popen([sys.executable, __file__, "--serve", *common, args.options])
    clients = None
    try:
        wait_for((pki / "ready").exists, 30, "the server")
        idle = settle(server.pid)
        connect_args = [*common, str(args.clients), str(args.streams)]
        clients = subprocess.Popen([sys.executable, __file__, "--connect", *connect_args])
        wait_for((pki / "connected").exists, 300, "the clients")
        connected = settle(server.pid)
    finally:
        for proc in (clients, server):
            if proc is not None:
                proc.kill()
                proc.wait()
    return {
        "clients": args.clients,
        "streams": args.streams,
        "tls": not args.plaintext,
        "options": json.loads(args.options),
        "idle_mb": round(idle, 1),
        "connected_mb": round(connected, 1),
        "kb_per_connection": round((connected - idle) * 1024 / args.clients, 1),
    }


def main() -> None:
    if sys.argv[1:2] in (["--serve"], ["--connect"]):
        plaintext = "--plaintext" in sys.argv
        rest = [a for a in sys.argv[2:] if a != "--plaintext"]
        if sys.argv[1] == "--serve":
            asyncio.run(serve(int(rest[0]), Path(rest[1]), [tuple(o) for o in json.loads(rest[2])], plaintext))
        else:
            asyncio.run(connect(int(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]), plaintext))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--options", default="[]", help="extra server options, JSON pairs")
    parser.add_argument("--plaintext", action="store_true", help="no TLS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-grpc-") as tmp:
        result = measure(args, Path(tmp))
    print(
        f"{args.clients} connections, {args.streams} streams each, TLS {result['tls']}: "
        f"{result['kb_per_connection']} KB per connection (server idle {result['idle_mb']} MB)"
    )
    result["machine"] = machine()
    write_result("grpc_connection_memory", result)


if __name__ == "__main__":
    main()
