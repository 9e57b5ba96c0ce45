"""Benchmark: agent memory and CPU, and pod start latency.

Starts a real `corral server` (embedded etcd), then a real `corral agent` with the
Docker and process runtimes once per way of reading Docker containers' CPU and
memory (`--docker-stats engine`, the engine's stats API, then `cgroup`, the
cgroup files; each its own node), and measures for each:

- the agent's RSS when idle, and with 10 Docker pods running (as an agent-only
  install runs it: without rich, which only the dev tools bring);
- the agent's CPU over a window with those pods running and metrics reported
  every --metrics-period seconds, and the engine's (dockerd + containerd) in
  the same window;
- pod start latency, from the Create call (the pod carries spec.nodeName, so it
  is assigned at once) until a watch sees it Running, for each runtime.

    .venv/bin/python bench/agent_pods.py [--pods 10] [--window 30] [--metrics-period 10]

Prints the figures and writes bench/results/agent_pods.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from harness import admin_credentials, machine, percentile, start_server, stop, wait_for, write_result

from corral.client import Client
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import pod_pb2

RESULTS = Path(__file__).resolve().parent / "results"
# Run the agent as an agent-only install (`pip install corral`) has it: without the
# packages only the dev tools bring (rich, via import-linter, which structlog would
# otherwise load for pretty tracebacks).
AGENT_ONLY = "import sys; sys.modules['rich'] = None; from corral.cli.main import main; sys.argv[0] = 'corral'; main()"
NODE = "bench-node"
STATS_SOURCES = ("engine", "cgroup")
ENGINE_PROCESSES = ("dockerd", "containerd")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def docker_pod(name: str, node: str = NODE) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["bench"] = "agent"
    p.spec.node_name = node
    p.spec.termination_grace_period_seconds = 2
    c = p.spec.containers.add(name="httpd", image="corral-test/busybox:1")
    c.ports.add(container_port=80)
    return p


def process_pod(name: str, node: str = NODE) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["bench"] = "agent"
    p.spec.node_name = node
    p.spec.runtime_class_name = "process"
    p.spec.termination_grace_period_seconds = 2
    p.spec.containers.add(name="main", image="host", command=[BUSYBOX, "sleep", "3600"])
    return p


class RunningWatcher:
    """Records when a watch first sees each pod Running."""

    def __init__(self, address: str, credentials: Credentials) -> None:
        self.seen: dict[str, float] = {}
        self.client = Client(address, credentials)
        _, self.revision = self.client.list("pods", "default")
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        try:
            for ev in self.client.watch("pods", "default", resource_version=self.revision):
                pod = ev.obj
                if isinstance(pod, pod_pb2.Pod) and pod.status.phase == "Running":
                    self.seen.setdefault(pod.metadata.name, time.perf_counter())
        except Exception:  # the channel closes when the benchmark ends
            return


def start_latencies(client: Client, watcher: RunningWatcher, pods: list[pod_pb2.Pod]) -> list[float]:
    created: dict[str, float] = {}
    for pod in pods:
        created[pod.metadata.name] = time.perf_counter()
        client.create(pod)
        wait_for(
            functools.partial(operator.contains, watcher.seen, pod.metadata.name), 60, f"{pod.metadata.name} Running"
        )
    return [watcher.seen[name] - t for name, t in created.items()]


def delete_all(client: Client, names: list[str]) -> None:
    for name in names:
        client.delete("pod", name, "default")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def engine_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ENGINE_PROCESSES]


def run_agent(
    tmp: str,
    address: str,
    token: str,
    node: str,
    stats: str,
    metrics_period: float,
) -> subprocess.Popen[bytes]:
    agent_log = open(Path(tmp) / f"agent-{node}.log", "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            AGENT_ONLY,
            "agent",
            "--server",
            address,
            "--name",
            node,
            "--data-dir",
            f"{tmp}/{node}",
            "--runtime",
            "docker",
            "--runtime",
            "process",
            *(["--allow-process-runtime-as-root"] if os.geteuid() == 0 else []),
            "--log-level",
            "warning",
            "--docker-stats",
            stats,
            "--metrics-period",
            str(metrics_period),
        ],
        stdout=agent_log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CORRAL_TOKEN": token},
    )


def measure_agent(
    tmp: str,
    address: str,
    admin: Credentials,
    stats: str,
    pods: int,
    window: float,
    metrics_period: float,
    with_process_pods: bool,
) -> dict[str, object]:
    """One agent reading Docker stats from `stats`: RSS idle and with `pods` Docker pods, CPU over `window`."""
    client = Client(address, admin)
    token = client.create_token("node", 3600, "bench").token
    node = f"{NODE}-{stats}"
    agent = run_agent(tmp, address, token, node, stats, metrics_period)
    docker_names = [f"{stats}-d{i}" for i in range(pods)]
    process_names = [f"{stats}-p{i}" for i in range(pods)] if with_process_pods else []
    try:
        wait_for(lambda: _node_ready(client, node), 60, "agent registered")
        time.sleep(3)
        me = psutil.Process(agent.pid)
        idle_rss = me.memory_info().rss
        watcher = RunningWatcher(address, admin)
        docker = start_latencies(client, watcher, [docker_pod(name, node) for name in docker_names])
        time.sleep(metrics_period)  # settled, and a metrics report made
        engine = engine_processes()
        agent_before, engine_before, started = cpu_seconds([me]), cpu_seconds(engine), time.monotonic()
        time.sleep(window)
        agent_cpu, engine_cpu = cpu_seconds([me]) - agent_before, cpu_seconds(engine) - engine_before
        elapsed = time.monotonic() - started
        busy_rss = me.memory_info().rss
        process = start_latencies(client, watcher, [process_pod(name, node) for name in process_names])
        delete_all(client, docker_names + process_names)
        time.sleep(4)
    finally:
        stop(agent)
        subprocess.run(
            f"docker rm -f $(docker ps -aq --filter label=io.corral.node={node}) "
            f">/dev/null 2>&1; docker network rm corral-{node} >/dev/null 2>&1",
            shell=True,
            check=False,
        )
    return {
        "agent_rss_idle_mb": round(idle_rss / 2**20, 1),
        "agent_rss_docker_pods_mb": round(busy_rss / 2**20, 1),
        "agent_cpu_percent": round(agent_cpu / elapsed * 100, 2),
        "engine_cpu_percent": round(engine_cpu / elapsed * 100, 2),
        "docker_start": summary(docker),
        **({"process_start": summary(process)} if process else {}),
    }


def run(pods: int, window: float, metrics_period: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        # The server writes an admin credential to the CLI config: this run's own, not the user's.
        os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
        # Process pods are host processes: only the privileged pod security level admits them.
        server, address = start_server(tmp, f"{tmp}/server", "--pod-security", "privileged")
        try:
            admin = admin_credentials()
            by_source = {
                stats: measure_agent(
                    tmp, address, admin, stats, pods, window, metrics_period, with_process_pods=stats == "cgroup"
                )
                for stats in STATS_SOURCES
            }
        finally:
            stop(server)
    cgroup = by_source["cgroup"]
    return {
        "pods": pods,
        "window_seconds": window,
        "metrics_period_seconds": metrics_period,
        "agent_rss_idle_mb": cgroup["agent_rss_idle_mb"],
        "agent_rss_10_docker_pods_mb": cgroup["agent_rss_docker_pods_mb"],
        "docker_start": cgroup["docker_start"],
        "process_start": cgroup["process_start"],
        "by_docker_stats": by_source,
        "machine": machine(),
    }


def _node_ready(client: Client, node: str = NODE) -> bool:
    try:
        client.get("node", node)
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--window", type=float, default=30.0, help="seconds of CPU measured with the pods running")
    parser.add_argument("--metrics-period", type=float, default=10.0, help="the agent's --metrics-period")
    args = parser.parse_args()
    result = run(args.pods, args.window, args.metrics_period)
    for stats, figures in result["by_docker_stats"].items():  # type: ignore[attr-defined]
        print(
            f"--docker-stats {stats:6}: agent RSS idle {figures['agent_rss_idle_mb']} MB, with {args.pods} Docker "
            f"pods {figures['agent_rss_docker_pods_mb']} MB; CPU over {args.window:g} s: agent "
            f"{figures['agent_cpu_percent']}% of a core, engine {figures['engine_cpu_percent']}%"
        )
    d, p = result["docker_start"], result["process_start"]
    print(f"start latency, Docker:  p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms")  # type: ignore[index]
    print(f"start latency, process: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms")  # type: ignore[index]
    write_result("agent_pods", result)


if __name__ == "__main__":
    main()
