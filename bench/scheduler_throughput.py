"""Benchmark: scheduler throughput (pods bound per second) against real etcd.

Writes N Ready nodes (as N registered agents leave them) and P pending pods
into a real etcd (embedded, temp dir), then starts the real scheduler
controller (watch caches, batch passes, compare-and-swap binds) and times how
long it takes until every pod is bound.

    .venv/bin/python bench/scheduler_throughput.py [--nodes 1000] [--pods 10000]

With `--bound B --waves W`, B pods are already bound (spread over the nodes) when
the scheduler starts, and the P pending pods are created in W waves, each once
the one before is bound: many passes over a large bound population, where a
snapshot rebuilt per pass would cost most.

Prints the figures and writes bench/results/scheduler_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import machine, write_result

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.runner import ControllerManager
from controlplane.controllers.scheduling import SchedulerController
from controlplane.informer import Informer
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.etcd import EtcdStore
from controlplane.store.objects import ObjectStore
from corral.common import logs
from protos.corral.v1 import meta_pb2, node_pb2, pod_pb2

RESULTS = Path(__file__).resolve().parent / "results"


def node(i: int) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = f"hollow-{i:04d}"
    n.metadata.labels["zone"] = f"z{i % 3}"
    n.status.allocatable.update({"cpu": "32", "memory": "64Gi", "pods": "110"})
    n.status.capacity.update({"cpu": "32", "memory": "64Gi", "pods": "110"})
    n.status.runtimes.append("docker")
    n.status.conditions.add(type="Ready", status="True")
    return n


def pod(i: int) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = f"p-{i:06d}"
    p.metadata.owner_references.append(
        meta_pb2.OwnerReference(
            api_version="apps/v1", kind="ReplicaSet", name=f"rs-{i % 100}", uid=f"rs-uid-{i % 100}", controller=True
        )
    )
    c = p.spec.containers.add(name="main", image="busybox:1.36")
    c.resources.requests.update({"cpu": "100m", "memory": "64Mi"})
    return p


async def write_all(api: ObjectApi, objs: list[object], concurrency: int = 64) -> None:
    items = iter(objs)

    async def worker() -> None:
        for obj in items:
            await api.create(obj)  # type: ignore[arg-type]

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def bound_pod(i: int, nodes: int) -> pod_pb2.Pod:
    p = pod(i)
    p.metadata.name = f"b-{i:06d}"
    p.spec.node_name = f"hollow-{i % nodes:04d}"
    return p


async def wait_bound(pod_cache: Informer, count: int) -> None:
    while True:
        bound = sum(1 for p in pod_cache.items.values() if isinstance(p, pod_pb2.Pod) and p.spec.node_name)
        if pod_cache.synced.is_set() and bound >= count:
            return
        await asyncio.sleep(0.05)


async def run(nodes: int, pods: int, *, already_bound: int = 0, waves: int = 1) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        etcd = EmbeddedEtcd(Path(tmp))
        endpoint = await etcd.start()
        store = await EtcdStore.connect([endpoint])
        try:
            objects = ObjectStore(store)
            api = ObjectApi(objects)
            await write_all(api, [node(i) for i in range(nodes)])
            await write_all(api, [bound_pod(i, nodes) for i in range(already_bound)])
            per_wave = -(-pods // waves)
            first = list(range(min(per_wave, pods)))
            await write_all(api, [pod(i) for i in first])
            scheduler = SchedulerController(api, EventRecorder(api, "scheduler"))
            manager = ControllerManager(objects, [scheduler])
            pod_cache = manager.informer("Pod")
            started = time.perf_counter()
            task = asyncio.create_task(manager.run())
            done = already_bound + len(first)
            await wait_bound(pod_cache, done)
            if waves > 1:  # the first wave fills the scheduler's caches; the clock starts after it
                started = time.perf_counter()
            for wave in range(1, waves):
                batch = range(wave * per_wave, min(pods, (wave + 1) * per_wave))
                await write_all(api, [pod(i) for i in batch])
                done += len(batch)
                await wait_bound(pod_cache, done)
            timed = pods if waves == 1 else pods - per_wave
            elapsed = time.perf_counter() - started
            spread = Counter(p.spec.node_name for p in pod_cache.items.values() if isinstance(p, pod_pb2.Pod))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await store.close()
            await etcd.stop()
    return {
        "nodes": nodes,
        "pods": pods,
        "already_bound": already_bound,
        "waves": waves,
        "timed_pods": timed,
        "seconds": round(elapsed, 2),
        "pods_bound_per_second": round(timed / elapsed, 1),
        "max_pods_on_a_node": max(spread.values()),
        "nodes_used": len(spread),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--bound", type=int, default=0, help="pods already bound when the scheduler starts")
    parser.add_argument("--waves", type=int, default=1, help="create the pending pods in this many waves")
    args = parser.parse_args()
    logs.configure("warning")
    result = asyncio.run(run(args.nodes, args.pods, already_bound=args.bound, waves=max(1, args.waves)))
    print(
        f"bound {result['timed_pods']} pods ({result['waves']} waves, {result['already_bound']} already bound) "
        f"on {result['nodes']} nodes in {result['seconds']} s: "
        f"{result['pods_bound_per_second']} pods/s (at most {result['max_pods_on_a_node']} per node, "
        f"{result['nodes_used']} nodes used)"
    )
    write_result("scheduler_throughput", result)


if __name__ == "__main__":
    main()
