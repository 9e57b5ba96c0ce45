"""Network partitions: agents in their own network namespaces, cut off from
the control plane by iptables DROP rules on the host side of their veth
(`tests/chaos/netns.py`), then healed.

One `corral server` (embedded etcd, node grace 12 s, default toleration of
owned pods 5 s) listening on 0.0.0.0; three `corral agent --runtime process`,
one per namespace; a Deployment of 3 `sleep 3600` pods, one per node.

- One node cut for 8 s (less than grace + toleration): nothing is replaced
  or restarted — same pods, same uids, same restart counts, same processes.
- One node cut for 30 s: its pod is replaced on the others (time printed);
  after healing, the node stops the pod it no longer has, and the Deployment
  has exactly 3 Running pods.
- Every node cut at once (the control plane is the one cut off) for 2 minutes:
  nothing is evicted, the processes keep running on the nodes, and after
  healing every node is Ready again with the same pods.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from corral.client import Client
from protos.corral.v1 import meta_pb2, workloads_pb2
from tests.chaos.netns import NetnsNode, alive, netns_missing
from tests.e2e.conftest import PROCESS_PODS, ServerProcess, cli_credentials, free_port, wait_until

pytestmark = [pytest.mark.chaos]

APP = "web"
REPLICAS = 3
GRACE = 12.0  # the server's node grace period (default)
TOLERATION = 5.0  # default toleration of unreachable for pods a controller owns


@dataclass
class Partitioned:
    server: ServerProcess
    client: Client
    nodes: list[NetnsNode]

    def pods(self) -> list[Any]:
        items, _ = self.client.list("pods", "default", selector=f"app={APP}")
        return list(items)

    def node(self, name: str) -> Any:
        return self.client.get("nodes", name)

    def ready(self, name: str) -> str:
        node = self.node(name)
        return next((c.status for c in node.status.conditions if c.type == "Ready"), "")

    def heartbeat(self, name: str) -> float:
        node = self.node(name)
        cond = next((c for c in node.status.conditions if c.type == "Ready"), None)
        return cond.last_heartbeat_time.ToDatetime().timestamp() if cond is not None else 0.0


def deployment() -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name=APP, namespace="default"))
    d.spec.replicas = REPLICAS
    d.spec.selector.match_labels["app"] = APP
    d.spec.template.metadata.labels["app"] = APP
    spec = d.spec.template.spec
    spec.runtime_class_name = "process"
    spec.termination_grace_period_seconds = 1
    spec.containers.add(name="main", image="host", command=["/bin/sh", "-c", "sleep 3600"])
    return d


def running(pod: Any) -> bool:
    return pod.status.phase == "Running" and not pod.metadata.HasField("deletion_timestamp")


def snapshot(pods: list[Any]) -> dict[str, tuple[str, str, int]]:
    """Pod name → (uid, node, restart count)."""
    return {
        p.metadata.name: (p.metadata.uid, p.spec.node_name, sum(s.restart_count for s in p.status.container_statuses))
        for p in pods
    }


def pod_pids(p: Partitioned) -> dict[str, int]:
    """Pod uid → pid of its process, from each agent's data dir (container ids carry the pod)."""
    found: dict[str, int] = {}
    pods = p.pods()
    for node in p.nodes:
        pids = node.container_pids()
        for pod in pods:
            for status in pod.status.container_statuses:
                cid = status.container_id.removeprefix("process://")
                if cid in pids:
                    found[pod.metadata.uid] = pids[cid]
    return found


@pytest.fixture
def partitioned(tmp_path: Path) -> Iterator[Partitioned]:
    missing = netns_missing()
    if missing:
        pytest.skip(missing)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["CORRAL_SERVER"] = f"127.0.0.1:{port}"
    join_port = free_port()
    server = ServerProcess(
        tmp_path / "data",
        f"0.0.0.0:{port}",
        env,
        tmp_path / "server.log",
        join_address=f"0.0.0.0:{join_port}",
        extra_args=PROCESS_PODS,
    )
    nodes = [
        NetnsNode(f"pn{i}", port, tmp_path / f"agent{i}", tmp_path / f"agent{i}.log", env, join_port=join_port)
        for i in range(3)
    ]
    client: Client | None = None
    try:
        server.start()
        client = Client(env["CORRAL_SERVER"], cli_credentials(env), timeout=10)
        for node in nodes:
            node.create()
            node.start_agent()
        p = Partitioned(server, client, nodes)
        for node in nodes:
            wait_until(functools.partial(_is_ready, p, node.name), 60, f"{node.name} Ready", node.log)
        client.apply(deployment())

        def spread_and_running() -> bool:
            pods = p.pods()
            return (
                len(pods) == REPLICAS
                and all(running(x) for x in pods)
                and {x.spec.node_name for x in pods} == {n.name for n in nodes}
                and len(pod_pids(p)) == REPLICAS
            )

        wait_until(spread_and_running, 60, "3 Running pods, one per node", server.log)
        yield p
    finally:
        for node in nodes:
            node.destroy()
        if client is not None:
            client.close()
        server.stop()


def _is_ready(p: Partitioned, name: str) -> bool:
    try:
        return p.ready(name) == "True"
    except Exception:  # not registered yet
        return False


def watch(p: Partitioned, seconds: float, seen: dict[str, tuple[str, str, int]]) -> None:
    """Poll the pods for ``seconds``, recording every pod ever seen (name → uid, node, restarts)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen.update(snapshot(p.pods()))
        time.sleep(0.5)


def test_a_node_cut_off_briefly_keeps_its_pods(partitioned: Partitioned, report: Callable[[str], None]) -> None:
    p = partitioned
    before = snapshot(p.pods())
    pids = pod_pids(p)
    victim = p.nodes[0]
    last_beat = p.heartbeat(victim.name)

    victim.cut()
    cut_at = time.monotonic()
    seen: dict[str, tuple[str, str, int]] = {}
    watch(p, 8.0, seen)
    states_during = p.ready(victim.name)
    victim.heal()
    healed_at = time.monotonic()
    wait_until(
        lambda: p.heartbeat(victim.name) > last_beat + 8 and p.ready(victim.name) == "True",
        30,
        "a heartbeat after healing",
        victim.log,
    )
    back = time.monotonic() - healed_at
    watch(p, 3.0, seen)

    after = snapshot(p.pods())
    report(
        f"one node cut off for {healed_at - cut_at:.1f} s (grace {GRACE:g} s + toleration {TOLERATION:g} s): "
        f"Ready at the end of the cut: {states_during}; heartbeating again {back:.2f} s after healing; "
        f"pods before {sorted(before)}, after {sorted(after)}; "
        f"pids unchanged: {pod_pids(p) == pids}"
    )
    assert seen == before, "a pod was created or replaced during the cut"
    assert after == before  # same names, uids, nodes, restart counts
    assert pod_pids(p) == pids
    assert all(alive(pid) for pid in pids.values())
    assert all(running(x) for x in p.pods())


def test_a_node_cut_off_for_long_has_its_pods_replaced_and_stops_them_on_rejoining(
    partitioned: Partitioned, report: Callable[[str], None]
) -> None:
    p = partitioned
    before = snapshot(p.pods())
    pids = pod_pids(p)
    victim = p.nodes[0]
    (old_name,) = [name for name, (_, node, _) in before.items() if node == victim.name]
    old_uid = before[old_name][0]
    old_pid = pids[old_uid]
    others = {n.name for n in p.nodes[1:]}

    victim.cut()
    cut_at = time.monotonic()

    def replaced() -> bool:
        pods = p.pods()
        return (
            old_name not in {x.metadata.name for x in pods}
            and len(pods) == REPLICAS
            and all(running(x) and x.spec.node_name in others for x in pods)
        )

    wait_until(replaced, 28, "the cut node's pod to be replaced on the others", p.server.log)
    replaced_after = time.monotonic() - cut_at
    # Static stability: the cut-off node keeps running what it has.
    assert alive(old_pid), "the cut-off node stopped its pod while it could not hear the control plane"
    time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    still_running_at_heal = alive(old_pid)
    victim.heal()
    healed_at = time.monotonic()

    wait_until(lambda: p.ready(victim.name) == "True", 30, "the node Ready again", victim.log)
    ready_after = time.monotonic() - healed_at
    wait_until(lambda: not alive(old_pid), 30, "the rejoined node to stop its unassigned pod", victim.log)
    stopped_after = time.monotonic() - healed_at

    seen: dict[str, tuple[str, str, int]] = {}
    watch(p, 3.0, seen)
    pods = p.pods()
    report(
        f"one node cut off for 30 s: pod {old_name} replaced after {replaced_after:.1f} s "
        f"(grace {GRACE:g} s + toleration {TOLERATION:g} s); its process still running at the heal: "
        f"{still_running_at_heal}; node Ready {ready_after:.2f} s after healing; the orphaned process "
        f"stopped {stopped_after:.2f} s after healing; pods now {sorted(x.metadata.name for x in pods)}"
    )
    assert len(pods) == REPLICAS and all(running(x) for x in pods)
    assert len(seen) == REPLICAS, f"duplicates seen after healing: {sorted(seen)}"
    assert {x.spec.node_name for x in pods} <= others
    assert old_uid not in {x.metadata.uid for x in pods}
    # What runs is exactly the pods the control plane has: one process each, the old one gone.
    assert set(pod_pids(p)) == {x.metadata.uid for x in pods}
    assert all(alive(pid) for pid in pod_pids(p).values())
    assert not [pid for pid in victim.container_pids().values() if alive(pid)]


# Two minutes, as the issue asks; CORRAL_CHAOS_CUT_SECONDS runs a longer (or, by hand, shorter) cut.
CUT_ALL = float(os.environ.get("CORRAL_CHAOS_CUT_SECONDS", "120"))


@pytest.mark.timeout(CUT_ALL + 120)
def test_the_control_plane_cut_off_from_every_node_evicts_nothing(
    partitioned: Partitioned, report: Callable[[str], None]
) -> None:
    p = partitioned
    before = snapshot(p.pods())
    pids = pod_pids(p)

    for node in p.nodes:
        node.cut()
    cut_at = time.monotonic()
    seen: dict[str, tuple[str, str, int]] = {}
    watch(p, CUT_ALL, seen)
    states_during = {n.name: p.ready(n.name) for n in p.nodes}
    alive_during = all(alive(pid) for pid in pids.values())
    for node in p.nodes:
        node.heal()
    healed_at = time.monotonic()
    cut_for = healed_at - cut_at

    # Agents reconnect with a jittered back-off (up to 10 s): the first one back ends the full
    # disruption; the others must not have their pods evicted meanwhile.
    wait_until(lambda: any(p.ready(n.name) == "True" for n in p.nodes), 40, "a node Ready again", p.server.log)
    first_after = time.monotonic() - healed_at
    wait_until(lambda: all(p.ready(n.name) == "True" for n in p.nodes), 40, "every node Ready again", p.server.log)
    ready_after = time.monotonic() - healed_at
    watch(p, 8.0, seen)  # past the toleration the taints get anew when the disruption ends
    after = snapshot(p.pods())
    report(
        f"every node cut off for {cut_for:.0f} s: nodes at the end of the cut {states_during}; "
        f"pods evicted: {sorted(set(before) - set(after))}, created: {sorted(set(seen) - set(before))}; "
        f"processes alive throughout: {alive_during}; "
        f"first node Ready {first_after:.2f} s after healing, every node {ready_after:.2f} s"
    )
    assert seen == before, "a pod was evicted, replaced or restarted"
    assert after == before
    assert alive_during
    assert pod_pids(p) == pids and all(alive(pid) for pid in pids.values())
    assert all(running(x) for x in p.pods())
    assert all(v == "Unknown" for v in states_during.values())
