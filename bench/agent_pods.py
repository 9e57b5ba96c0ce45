"""Benchmark: agent memory and pod start latency.

Starts a real `corral server` (embedded etcd) and a real `corral agent` with the
Docker and process runtimes, then measures:

- the agent's RSS when idle, and with 10 Docker pods running (as an agent-only
  install runs it: without rich, which only the dev tools bring);
- pod start latency, from the Create call (the pod carries spec.nodeName, so it
  is assigned at once) until a watch sees it Running, for each runtime.

    .venv/bin/python bench/agent_pods.py [--pods 10]

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
from corral.pki.credentials import Credentials
from protos.corral.v1 import pod_pb2

RESULTS = Path(__file__).resolve().parent / "results"
# Run the agent as an agent-only install (`pip install corral`) has it: without the
# packages only the dev tools bring (rich, via import-linter, which structlog would
# otherwise load for pretty tracebacks).
AGENT_ONLY = ("import sys; sys.modules['rich'] = None; "
              "from corral.cli.main import main; sys.argv[0] = 'corral'; main()")
NODE = "bench-node"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def docker_pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["bench"] = "agent"
    p.spec.node_name = NODE
    p.spec.termination_grace_period_seconds = 2
    c = p.spec.containers.add(name="httpd", image="corral-test/busybox:1")
    c.ports.add(container_port=80)
    return p


def process_pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["bench"] = "agent"
    p.spec.node_name = NODE
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
        wait_for(functools.partial(operator.contains, watcher.seen, pod.metadata.name), 60,
                 f"{pod.metadata.name} Running")
    return [watcher.seen[name] - t for name, t in created.items()]


def delete_all(client: Client, names: list[str]) -> None:
    for name in names:
        client.delete("pod", name, "default")


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1)}


def run(pods: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        # The server writes an admin credential to the CLI config: this run's own, not the user's.
        os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
        # Process pods are host processes: only the privileged pod security level admits them.
        server, address = start_server(tmp, f"{tmp}/server", "--pod-security", "privileged")
        try:
            admin = admin_credentials()
            client = Client(address, admin)
            token = client.create_token("node", 3600, "bench").token
        except BaseException:
            stop(server)
            raise
        agent_log = open(Path(tmp) / "agent.log", "wb")
        agent = subprocess.Popen([sys.executable, "-c", AGENT_ONLY, "agent", "--server", address,
                                  "--name", NODE, "--data-dir", f"{tmp}/agent", "--runtime", "docker",
                                  "--runtime", "process", *(["--allow-process-runtime-as-root"] if os.geteuid() == 0
                                                            else []), "--log-level", "warning"],
                                 stdout=agent_log, stderr=subprocess.STDOUT, env={**os.environ, "CORRAL_TOKEN": token})
        try:
            wait_for(lambda: _node_ready(client), 60, "agent registered")
            time.sleep(3)
            idle_rss = psutil.Process(agent.pid).memory_info().rss
            watcher = RunningWatcher(address, admin)
            docker = start_latencies(client, watcher, [docker_pod(f"d{i}") for i in range(pods)])
            time.sleep(3)
            busy_rss = psutil.Process(agent.pid).memory_info().rss
            process = start_latencies(client, watcher, [process_pod(f"p{i}") for i in range(pods)])
            delete_all(client, [f"d{i}" for i in range(pods)] + [f"p{i}" for i in range(pods)])
            time.sleep(4)
        finally:
            stop(agent, server)
            subprocess.run("docker rm -f $(docker ps -aq --filter label=io.corral.node=bench-node) "
                           ">/dev/null 2>&1", shell=True, check=False)
    return {
        "pods": pods,
        "agent_rss_idle_mb": round(idle_rss / 2**20, 1),
        "agent_rss_10_docker_pods_mb": round(busy_rss / 2**20, 1),
        "docker_start": summary(docker),
        "process_start": summary(process),
        "machine": machine(),
    }


def _node_ready(client: Client) -> bool:
    try:
        client.get("node", NODE)
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10)
    args = parser.parse_args()
    result = run(args.pods)
    print(f"agent RSS idle: {result['agent_rss_idle_mb']} MB; with {args.pods} Docker pods: "
          f"{result['agent_rss_10_docker_pods_mb']} MB")
    d, p = result["docker_start"], result["process_start"]
    print(f"start latency, Docker:  p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms")  # type: ignore[index]
    print(f"start latency, process: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms")  # type: ignore[index]
    write_result("agent_pods", result)


if __name__ == "__main__":
    main()
