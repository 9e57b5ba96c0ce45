"""Benchmark: create N pods through the API, list them all, time single gets.

Starts a real `corral server` (embedded etcd in a temp dir) as a separate
process, then drives it over gRPC from this process with a bounded number of
requests in flight. Prints the figures and writes them as JSON.

    .venv/bin/python bench/api_pods.py [--pods 20000] [--concurrency 64] [--gets 2000]

Nothing here asserts on time; the numbers go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from harness import admin_credentials, machine, percentile, start_server, stop, write_result

from corral.common.pki.credentials import channel_options
from protos.corral.v1 import api_pb2, api_pb2_grpc, meta_pb2, pod_pb2

RESULTS = Path(__file__).resolve().parent / "results"


def make_pod(i: int) -> api_pb2.Object:
    labels = {"app": "bench", "shard": str(i % 16)}
    pod = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=f"bench-{i:06d}", labels=labels))
    c = pod.spec.containers.add(name="main", image="busybox:1.36", command=["httpd", "-f", "-p", "8080"])
    c.ports.add(container_port=8080)
    c.resources.requests.update({"cpu": "10m", "memory": "16Mi"})
    c.env.add(name="INDEX", value=str(i))
    return api_pb2.Object(pod=pod)


async def wait_ready(stub: api_pb2_grpc.ObjectServiceAsyncStub, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            await stub.List(api_pb2.ListRequest(kind="pods", limit=1), timeout=2)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)
    raise SystemExit("server did not become ready")


async def create_all(stub: api_pb2_grpc.ObjectServiceAsyncStub, n: int, concurrency: int) -> float:
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await stub.Create(api_pb2.CreateRequest(object=make_pod(i)), timeout=60)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def list_all(stub: api_pb2_grpc.ObjectServiceAsyncStub) -> tuple[float, int, int]:
    start = time.perf_counter()
    count, pages, token = 0, 0, ""
    while True:
        request = api_pb2.ListRequest(kind="pods", namespace="default", limit=500)
        setattr(request, "continue", token)
        page = await stub.List(request, timeout=60)
        count += len(page.items)
        pages += 1
        token = getattr(page, "continue")
        if not token:
            return time.perf_counter() - start, count, pages


async def time_gets(stub: api_pb2_grpc.ObjectServiceAsyncStub, n: int, pods: int) -> list[float]:
    latencies = []
    for k in range(n):
        name = f"bench-{(k * 7919) % pods:06d}"
        start = time.perf_counter()
        await stub.Get(api_pb2.GetRequest(kind="pods", namespace="default", name=name), timeout=10)
        latencies.append(time.perf_counter() - start)
    return latencies


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        # The server writes an admin credential to the CLI config: this run's own, not the user's.
        os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
        server, address = start_server(tmp, tmp)
        try:
            credentials = await asyncio.to_thread(admin_credentials)
            options = [("grpc.max_receive_message_length", 8 * 1024 * 1024), *channel_options()]
            async with grpc.aio.secure_channel(address, credentials.channel_credentials(), options=options) as channel:
                stub = api_pb2_grpc.ObjectServiceStub(channel)
                await wait_ready(stub, time.monotonic() + 60)
                create_s = await create_all(stub, args.pods, args.concurrency)
                list_s, listed, pages = await list_all(stub)
                gets = await time_gets(stub, args.gets, args.pods)
        finally:
            stop(server)
    return {
        "pods": args.pods,
        "concurrency": args.concurrency,
        "create_seconds": round(create_s, 2),
        "create_per_second": round(args.pods / create_s, 1),
        "list_seconds": round(list_s, 3),
        "listed": listed,
        "list_pages": pages,
        "get_count": len(gets),
        "get_p50_ms": round(percentile(gets, 50) * 1000, 2),
        "get_p99_ms": round(percentile(gets, 99) * 1000, 2),
        "get_mean_ms": round(statistics.fmean(gets) * 1000, 2),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--gets", type=int, default=2000)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"created {result['pods']} pods in {result['create_seconds']} s "
        f"({result['create_per_second']} pods/s, {result['concurrency']} in flight)"
    )
    print(f"listed {result['listed']} pods in {result['list_seconds']} s ({result['list_pages']} pages of 500)")
    print(f"single get over {result['get_count']} calls: p50 {result['get_p50_ms']} ms, p99 {result['get_p99_ms']} ms")
    write_result("api_pods", result)


if __name__ == "__main__":
    main()
