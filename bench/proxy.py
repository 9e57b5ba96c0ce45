"""Benchmark: the node proxy against a direct connection, in the same run.

Three processes on loopback, each on uvloop: a backend, the proxy
(`agent.network.proxy.server.ProxyServer` with one Service route to the backend) and
the load client (this process). Every workload runs both straight to the
backend and through the proxy:

- keep-alive round trips: 1 and 8 connections, each sending a 100-byte
  request and reading a 1 KiB response, over and over;
- bulk: one connection downloading `--bulk-mib` MiB;
- a new connection per request: 8 clients, connect → request → response → close.

The proxy runs on uvloop, as in the agent; `--proxy-loop asyncio` puts it on
the stdlib loop instead (results in proxy_asyncio.json), for comparison.

`--proxy-mode nftables` measures the kernel data path instead: the proxy
process applies the Service's nftables table (`agent.network.proxy.kernel`) and
idles, and the kernel DNATs each new connection to the backend (results in
proxy_nftables.json; the proxy CPU column is then ~0: the NAT work is done in
the client's and backend's system calls). It needs root and `nft`: the
benchmark re-executes itself inside a network namespace it makes
(`ip netns add corral-bench-<pid>`, lo up) and deletes afterwards, so the
host's ruleset is never touched; direct runs happen in that namespace too.

`--cluster-ip 10.43.0.10` measures the ClusterIP path (the Service's own
virtual IP, as pods and host processes reach it) instead of a node address:
the route carries the clusterIP, the proxy process keeps it local
(`agent.network.proxy.cluster_ips`, as the agent does: on `corral0`, or lo)
and the client connects to `<clusterIP>:<port>`; with `--proxy-mode
nftables` the kernel DNATs it, in userspace the proxy binds it. Root; it
runs in its own network namespace as nftables mode does (results in
proxy_clusterip[_nftables].json). That namespace sets `net.ipv4.tcp_tw_reuse=1`:
with the default (2: loopback addresses only) a client opening thousands of
connections per second to one non-127 address runs out of ephemeral ports
within seconds, whatever the data path (a real client pod has its own address).

Each case stops after `--seconds` seconds or `--requests` requests per
connection, whichever comes first; direct and proxied runs alternate for
`--rounds` rounds and the median run of each is shown.

    .venv/bin/python bench/proxy.py [--seconds 3] [--bulk-mib 4096] [--proxy-loop asyncio]
                                    [--proxy-mode userspace|nftables] [--cluster-ip 10.43.0.10]

Prints requests/s, p50/p99 latency and MB/s, the proxy process's CPU time
per request (per GB for bulk: steadier than rates on a busy machine), and writes
bench/results/proxy.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import uvloop
from harness import free_port, machine, percentile, stop, wait_for, write_result

REPO = Path(__file__).resolve().parents[1]
# Set in the re-executed benchmark: the network namespace it runs in.
NETNS_ENV = "CORRAL_BENCH_NETNS"
REQUEST = b"R 1024\n".ljust(99, b".") + b"\n"
RESPONSE_SIZE = 1024
CHUNK = 256 * 1024


# -- the backend: "R <n>" answers n bytes; "B <n>" streams n bytes ------------------------


class BackendProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.bulk_left = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.startswith(b"R "):
                self.transport.write(b"x" * int(line[2:].split(b".")[0]))
            elif line.startswith(b"B "):
                self.bulk_left = int(line[2:])
                self._stream()

    def _stream(self) -> None:
        assert self.transport is not None
        block = bytes(CHUNK)
        while self.bulk_left > 0 and not self.paused:
            size = min(CHUNK, self.bulk_left)
            self.transport.write(block[:size])
            self.bulk_left -= size

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._stream()


async def serve_backend(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BackendProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


async def serve_proxy(
    address: str, port: int, backend_port: int, mode: str = "userspace", cluster_ip: str = ""
) -> None:
    sys.path.insert(0, str(REPO))
    from agent.network.proxy.cluster_ips import ClusterIpAddresses
    from agent.network.proxy.kernel import KernelProxy
    from agent.network.proxy.server import ProxyServer
    from protos.corral.v1 import discovery_pb2

    proxy = ProxyServer([address])
    keeper = ClusterIpAddresses(on_ready=proxy.retry_binds)
    proxy.on_cluster_ips = keeper.want
    route = discovery_pb2.ServiceRoute(
        namespace="bench",
        name="backend",
        cluster_ip=cluster_ip,
        type="ClusterIP",
        ports=[
            discovery_pb2.RoutePort(
                name="tcp",
                protocol="TCP",
                port=port,
                backends=[discovery_pb2.RouteBackend(address="127.0.0.1", port=backend_port, pod="backend-0")],
            )
        ],
    )
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    kernel: KernelProxy | None = None
    if mode == "userspace":
        proxy.update({"bench/backend": route})
    else:
        kernel = KernelProxy(proxy, "corral_bench", [address])
        kernel.on_cluster_ips = lambda ips: keeper.want(ips, "kernel")
        await kernel.start()
        kernel.update({"bench/backend": route})
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(proxy.run()), group.create_task(keeper.run())]
        if kernel is not None:
            tasks.append(group.create_task(kernel.run()))
        await stopping.wait()  # then the table is deleted
        for task in tasks:
            task.cancel()


def run_in_netns() -> int:
    """Run this benchmark again, with the same arguments, inside a network namespace made for it."""
    name = f"corral-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        # The namespace's own sysctl: TIME_WAIT ports reused for any address, not only 127/8 (the default 2),
        # so that a client opening connections to a clusterIP as fast as to 127.0.0.1 does not run out of ports.
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], check=True)
        env = {**os.environ, NETNS_ENV: name}
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, *sys.argv], env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


# -- the client ------------------------------------------------------------------------


class ClientProtocol(asyncio.Protocol):
    """Counts bytes; wakes the waiter once `expected` bytes have come."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self.expected = 0
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.waiter is not None and self.received >= self.expected and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def exchange(self, request: bytes, expected: int) -> None:
        assert self.transport is not None
        self.received, self.expected = 0, expected
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        await self.waiter


async def connect(port: int, address: str = "127.0.0.1") -> ClientProtocol:
    _, protocol = await asyncio.get_running_loop().create_connection(ClientProtocol, address, port)
    return protocol


async def keepalive(port: int, connections: int, seconds: float, limit: int, address: str) -> dict[str, float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def one() -> None:
        client = await connect(port, address)
        try:
            for _ in range(limit):
                started = time.perf_counter()
                if started > end:
                    return
                await client.exchange(REQUEST, RESPONSE_SIZE)
                latencies.append(time.perf_counter() - started)
        finally:
            assert client.transport is not None
            client.transport.close()

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return figures(latencies, time.perf_counter() - began)


async def new_connections(port: int, clients: int, seconds: float, limit: int, address: str) -> dict[str, float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def one() -> None:
        for _ in range(limit):
            started = time.perf_counter()
            if started > end:
                return
            client = await connect(port, address)
            await client.exchange(REQUEST, RESPONSE_SIZE)
            assert client.transport is not None
            client.transport.close()
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return figures(latencies, time.perf_counter() - began)


async def bulk(port: int, mib: int, timeout: float, address: str) -> dict[str, float]:
    client = await connect(port, address)
    size = mib * 2**20
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await client.exchange(f"B {size}\n".encode(), size)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - began
    assert client.transport is not None
    client.transport.close()
    return {
        "mib": round(client.received / 2**20, 1),
        "seconds": round(elapsed, 2),
        "mb_per_s": round(client.received / 1e6 / elapsed, 1),
    }


def figures(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


CASES = ("keepalive_1_conn", "keepalive_8_conns", "bulk_1_conn", "new_conn_per_request_8_clients")


async def measure(case: str, port: int, args: argparse.Namespace, address: str) -> dict[str, float]:
    if case == "keepalive_1_conn":
        return await keepalive(port, 1, args.seconds, args.requests, address)
    if case == "keepalive_8_conns":
        return await keepalive(port, 8, args.seconds, args.requests, address)
    if case == "bulk_1_conn":
        return await bulk(port, args.bulk_mib, 60, address)
    return await new_connections(port, 8, args.seconds, args.requests, address)


def measure_with_cpu(
    case: str, port: int, args: argparse.Namespace, proxy_pid: int, address: str = "127.0.0.1"
) -> dict[str, float]:
    """One run, with the proxy process's CPU time per request (or per GB) while it ran."""
    proxy = psutil.Process(proxy_pid)
    before = proxy.cpu_times()
    result = uvloop.run(measure(case, port, args, address))
    after = proxy.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    if "mb_per_s" in result:
        result["proxy_cpu_s_per_gb"] = round(cpu / max(result["mib"] * 2**20 / 1e9, 1e-9), 3)
    else:
        result["proxy_cpu_us_per_request"] = round(cpu * 1e6 / max(result["requests"], 1), 1)
    return result


def headline(figures: dict[str, float]) -> float:
    return figures["mb_per_s"] if "mb_per_s" in figures else figures["requests_per_s"]


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median headline figure (the machine's noise moves whole runs)."""
    return sorted(runs, key=headline)[len(runs) // 2]


def listening(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((address, port)) == 0


def run(args: argparse.Namespace) -> dict[str, object]:
    backend_port, proxy_port = free_port(), free_port()
    me = [sys.executable, str(Path(__file__).resolve())]
    backend = subprocess.Popen([*me, "--role", "backend", "--port", str(backend_port)])
    proxy_args = [
        "--port",
        str(proxy_port),
        "--backend-port",
        str(backend_port),
        "--proxy-loop",
        args.proxy_loop,
        "--proxy-mode",
        args.proxy_mode,
        "--cluster-ip",
        args.cluster_ip,
    ]
    proxy = subprocess.Popen(
        [*me, "--role", "proxy", *proxy_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: listening(backend_port), 30, "the backend")
        target = args.cluster_ip or "127.0.0.1"
        wait_for(lambda: listening(proxy_port, target), 30, "the proxy")
        # Direct and proxied alternate, round after round, so drift on the machine hits both alike.
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for case in CASES:
                for side, port, address in (("direct", backend_port, "127.0.0.1"), ("proxy", proxy_port, target)):
                    runs.setdefault((side, case), []).append(measure_with_cpu(case, port, args, proxy.pid, address))
    finally:
        stop(backend, proxy)
    direct = {case: median_run(runs[("direct", case)]) for case in CASES}
    proxied = {case: median_run(runs[("proxy", case)]) for case in CASES}
    ratios = {case: round(headline(proxied[case]) / max(headline(direct[case]), 1e-9), 2) for case in CASES}
    return {
        "direct": direct,
        "proxy": proxied,
        "proxy_to_direct": ratios,
        "proxy_loop": args.proxy_loop,
        "proxy_mode": args.proxy_mode,
        "path": "clusterip" if args.cluster_ip else "node address",
        "seconds_per_case": args.seconds,
        "rounds": args.rounds,
        "request_bytes": len(REQUEST),
        "response_bytes": RESPONSE_SIZE,
        "machine": machine(),
    }


Figures = dict[str, dict[str, float]]


def report(direct: Figures, proxied: Figures, ratios: dict[str, float]) -> None:
    print(f"{'case':32} {'direct':>27} {'proxy':>27} {'proxy/direct':>13}  proxy CPU")
    for case, d in direct.items():
        p = proxied[case]
        if "mb_per_s" in d:
            print(
                f"{case:32} {d['mb_per_s']:>22.0f} MB/s {p['mb_per_s']:>22.0f} MB/s {ratios[case]:>13.2f}"
                f"  {p['proxy_cpu_s_per_gb']:.2f} s/GB"
            )
        else:
            print(
                f"{case:32} {d['requests_per_s']:>7.0f} req/s p99 {d['p99_ms']:>5.2f} ms "
                f"{p['requests_per_s']:>7.0f} req/s p99 {p['p99_ms']:>5.2f} ms {ratios[case]:>13.2f}"
                f"  {p['proxy_cpu_us_per_request']:.0f} µs/req"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "backend", "proxy"], default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend-port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0, help="per case and side")
    parser.add_argument("--requests", type=int, default=200_000, help="at most, per connection and case")
    parser.add_argument("--bulk-mib", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every case per side; the median is shown")
    parser.add_argument(
        "--proxy-loop", choices=["uvloop", "asyncio"], default="uvloop", help="the proxy's loop (the agent's: uvloop)"
    )
    parser.add_argument(
        "--proxy-mode",
        choices=["userspace", "nftables"],
        default="userspace",
        help="the node proxy's data path (nftables: root and nft; runs in its own network namespace)",
    )
    parser.add_argument(
        "--cluster-ip", default="", help="measure the ClusterIP path to this address (root; own network namespace)"
    )
    args = parser.parse_args()
    isolated = args.proxy_mode == "nftables" or args.cluster_ip
    if args.role == "bench" and isolated and not os.environ.get(NETNS_ENV):
        sys.exit(run_in_netns())
    if args.role == "backend":
        uvloop.run(serve_backend(args.port))
        return
    if args.role == "proxy":
        proxy = serve_proxy("127.0.0.1", args.port, args.backend_port, args.proxy_mode, args.cluster_ip)
        if args.proxy_loop == "uvloop":
            uvloop.run(proxy)
        else:
            asyncio.run(proxy)
        return
    result = run(args)
    report(result["direct"], result["proxy"], result["proxy_to_direct"])  # type: ignore[arg-type]
    name = "proxy" if args.proxy_loop == "uvloop" else f"proxy_{args.proxy_loop}"
    name += "_clusterip" if args.cluster_ip else ""
    write_result(name if args.proxy_mode == "userspace" else f"{name}_{args.proxy_mode}", result)


if __name__ == "__main__":
    main()
