"""Benchmarks: Deployment startup on hollow nodes, and healing a lost node.

1. Startup: a real `corral server` and 100 hollow nodes (`bench/hollow.py`: the
   agent's session and status reports, pods that change state on events, in
   one process); apply a 1,000-replica Deployment and time
   until all pods are Running, plus each pod's startup latency (first seen by
   a watch → seen Running).
2. Node loss: three hollow nodes, each in its own process, and a 6-replica
   Deployment; kill -9 one node's process and time until all 6 pods are Running
   on the other two (default settings: 12 s grace, 5 s toleration).

    .venv/bin/python bench/deployments.py [--nodes 100] [--replicas 1000]

Prints the figures and writes bench/results/deployments.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import admin_credentials, machine, percentile, start_server, stop, wait_for, write_result

from corral.client import Client, ClientError
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import node_pb2, pod_pb2, workloads_pb2

RESULTS = Path(__file__).resolve().parent / "results"
HOLLOW = str(Path(__file__).resolve().parent / "hollow.py")


def deployment(name: str, replicas: int) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name = name
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    c = d.spec.template.spec.containers.add(name="main", image="hollow/app:1")
    c.resources.requests.update({"cpu": "10m", "memory": "16Mi"})
    return d


def start_cluster(tmp: str) -> tuple[subprocess.Popen[bytes], str, Client, str]:
    """A `corral server`, an admin client for it, and a join token for the hollow nodes."""
    # The server writes an admin credential to the CLI config: this run's own, not the user's.
    os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
    # Every hollow node joins from 127.0.0.1: the join port's per-address rate limit
    # (1/s after a burst of 20) would make the fleet's start the figure measured.
    server, address = start_server(tmp, f"{tmp}/server", "--join-rate", "1000", "--join-burst", "1000")
    try:
        client = Client(address, admin_credentials())
        token = client.create_token("node", 3600, "hollow nodes").token
    except BaseException:
        stop(server)
        raise
    return server, address, client, token


class PodClock:
    """A watch that stamps when each pod is first seen and first seen Running."""

    def __init__(self, address: str, credentials: Credentials, selector: str) -> None:
        self.first: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.nodes: dict[str, str] = {}
        client = Client(address, credentials)
        _, revision = client.list("pods", "default", selector=selector)
        threading.Thread(target=self._follow, args=(client, selector, revision), daemon=True).start()

    def _follow(self, client: Client, selector: str, revision: str) -> None:
        try:
            for ev in client.watch("pods", "default", selector=selector, resource_version=revision):
                pod = ev.obj
                if not isinstance(pod, pod_pb2.Pod):
                    continue
                name, now = pod.metadata.name, time.perf_counter()
                if ev.type == "DELETED":
                    self.running.pop(name, None)
                    self.nodes.pop(name, None)
                    continue
                self.first.setdefault(name, now)
                self.nodes[name] = pod.spec.node_name
                if pod.spec.node_name:
                    self.bound.setdefault(name, now)
                if pod.status.phase == "Running":
                    self.running.setdefault(name, now)
        except ClientError:
            return


def hollow(address: str, nodes: int, prefix: str, token: str) -> subprocess.Popen[bytes]:
    """Hollow nodes in their own process; each joins with ``token`` (CORRAL_TOKEN) for its node certificate."""
    return subprocess.Popen(
        [sys.executable, HOLLOW, "--server", address, "--nodes", str(nodes), "--prefix", prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CORRAL_TOKEN": token},
    )


def ready_nodes(client: Client, prefix: str) -> int:
    try:
        nodes, _ = client.list("nodes")
    except ClientError:
        return 0
    return sum(1 for n in nodes if isinstance(n, node_pb2.Node) and n.metadata.name.startswith(prefix))


def startup(nodes: int, replicas: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        server, address, client, token = start_cluster(tmp)
        fleet = hollow(address, nodes, "hollow", token)
        try:
            wait_for(lambda: ready_nodes(client, "hollow") == nodes, 120, f"{nodes} hollow nodes")
            clock = PodClock(address, client.credentials, "app=big")
            started = time.perf_counter()
            client.apply(deployment("big", replicas))
            wait_for(lambda: len(clock.running) >= replicas, 600, f"{replicas} pods Running")
            total = time.perf_counter() - started
            latencies = sorted(clock.running[n] - clock.first[n] for n in clock.running)
            to_bind = sorted(clock.bound[n] - clock.first[n] for n in clock.running if n in clock.bound)
        finally:
            stop(fleet, server)
    return {
        "nodes": nodes,
        "replicas": replicas,
        "all_running_seconds": round(total, 2),
        "startup_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "startup_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "bind_p50_ms": round(statistics.median(to_bind) * 1000, 1),
        "bind_p99_ms": round(percentile(to_bind, 99) * 1000, 1),
    }


def node_loss() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        server, address, client, token = start_cluster(tmp)
        fleet = [hollow(address, 1, f"loss{i}", token) for i in range(3)]
        try:
            wait_for(lambda: sum(ready_nodes(client, f"loss{i}") for i in range(3)) == 3, 60, "3 nodes")
            clock = PodClock(address, client.credentials, "app=heal")
            client.apply(deployment("heal", 6))
            wait_for(lambda: len(clock.running) == 6, 60, "6 pods Running")
            victim = "loss0-0000"
            fleet[0].send_signal(signal.SIGKILL)
            lost_at = time.perf_counter()

            def healed() -> bool:
                running = [n for n in clock.running if clock.nodes.get(n) != victim]
                return len(running) == 6

            wait_for(healed, 120, "pods running elsewhere")
            seconds = time.perf_counter() - lost_at
        finally:
            stop(*fleet, server)
    return {"node_loss_to_running_elsewhere_seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1000)
    args = parser.parse_args()
    result: dict[str, object] = {}
    result.update(startup(args.nodes, args.replicas))
    print(
        f"{args.replicas} replicas on {args.nodes} hollow nodes: all Running in {result['all_running_seconds']} s; "
        f"pod startup p50 {result['startup_p50_ms']} ms, p99 {result['startup_p99_ms']} ms "
        f"(of which created → bound: p50 {result['bind_p50_ms']} ms, p99 {result['bind_p99_ms']} ms)"
    )
    result.update(node_loss())
    print(f"node loss to its pods Running elsewhere: {result['node_loss_to_running_elsewhere_seconds']} s")
    result["machine"] = machine()
    write_result("deployments", result)


if __name__ == "__main__":
    main()
