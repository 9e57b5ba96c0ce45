"""Benchmark: the scheduler's snapshot per pass, rebuilt from every pod vs kept by events.

Builds N nodes and P pods bound to them (as `scheduler_throughput.py` makes them),
then times, per scheduling pass:

- the full rebuild (`build_snapshot` over every node and bound pod, requests
  parsed once per pod and cached, as the scheduler did before its cache);
- the event-fed `SchedulerCache`: the events of K new bindings spread over the
  nodes, then `snapshot()`.

    .venv/bin/python bench/scheduler_snapshot.py [--nodes 1000] [--pods 10000] [--changes 100]

Prints the figures and writes bench/results/scheduler_snapshot.json. Pure CPU, no etcd.
"""

from __future__ import annotations

import argparse
import time

from harness import machine, write_result
from scheduler_throughput import node, pod

from controlplane.scheduler.cache import SchedulerCache
from controlplane.scheduler.snapshot import PodRequest, build_snapshot, plain_request
from protos.corral.v1 import pod_pb2

PASSES = 10


def bound(i: int, nodes: int, prefix: str = "u") -> pod_pb2.Pod:
    p = pod(i)
    p.metadata.uid = f"{prefix}{i}"
    p.spec.node_name = f"hollow-{i % nodes:04d}"
    return p


def run(nodes: int, pods: int, changes: int) -> dict[str, object]:
    node_objs = [node(i) for i in range(nodes)]
    pod_objs = [bound(i, nodes) for i in range(pods)]
    requests: dict[str, PodRequest] = {}

    def request_of(p: pod_pb2.Pod) -> PodRequest:
        r = requests.get(p.metadata.uid)
        if r is None:
            r = requests[p.metadata.uid] = plain_request(p)
        return r

    build_snapshot(node_objs, pod_objs, request_of)  # requests parsed once, as the old cache did
    started = time.perf_counter()
    for _ in range(PASSES):
        build_snapshot(node_objs, pod_objs, request_of)
    full = (time.perf_counter() - started) / PASSES

    cache = SchedulerCache()
    started = time.perf_counter()
    for n in node_objs:
        cache.set_node(n)
    for p in pod_objs:
        cache.set_pod(p)
    cache.snapshot()
    fill = time.perf_counter() - started

    extra = [bound(pods + i, nodes, prefix="x") for i in range(changes * PASSES)]
    for i, p in enumerate(extra):
        p.spec.node_name = f"hollow-{(i * 7) % nodes:04d}"
    started = time.perf_counter()
    for step in range(PASSES):
        for p in extra[step * changes : (step + 1) * changes]:
            cache.set_pod(p)
        cache.snapshot()
    incremental = (time.perf_counter() - started) / PASSES
    return {
        "nodes": nodes,
        "pods": pods,
        "changes_per_pass": changes,
        "full_rebuild_ms_per_pass": round(full * 1000, 2),
        "incremental_ms_per_pass": round(incremental * 1000, 2),
        "incremental_fill_ms_once": round(fill * 1000, 1),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=100, help="new bindings between two passes")
    args = parser.parse_args()
    result = run(args.nodes, args.pods, args.changes)
    print(
        f"{result['nodes']} nodes, {result['pods']} bound pods: full rebuild "
        f"{result['full_rebuild_ms_per_pass']} ms/pass; incremental {result['incremental_ms_per_pass']} ms/pass "
        f"after {result['changes_per_pass']} bindings (filling the cache once: {result['incremental_fill_ms_once']} ms)"
    )
    write_result("scheduler_snapshot", result)


if __name__ == "__main__":
    main()
