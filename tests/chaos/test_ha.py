"""A highly available control plane losing a replica and an etcd member in
the middle of a rolling update.

Three `corral server` replicas (lease ttl 3 s), each given all three members
of a 3-member etcd cluster; three `corral agent --runtime process`. A
Deployment of 4 `sleep 3600` pods (maxSurge 1, maxUnavailable 0) rolls out a
new version (an env var); once the first new pod exists, the leader replica
and the etcd member every replica talks to (the first endpoint) are killed
with SIGKILL at the same moment, while a writer keeps creating Secrets.

What must hold: another replica leads within 15 s; the rollout completes (4
pods, all of the new version, Ready, none terminating); the surge and
unavailability bounds hold after every pod event a watcher sees (it follows
the pods through a client given every server, listing again after any error)
and on every poll; no pod name is seen with two uids, and each of the 4 new
slots got exactly one pod; every object created before the faults, and every
write acknowledged during them, is there afterwards with its content.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controlplane.store.errors import UnavailableError
from controlplane.store.etcd import EtcdStore
from corral.client import Client, ClientError
from protos.corral.v1 import meta_pb2, secret_pb2, workloads_pb2
from tests.chaos.conftest import (
    LEADER_KEY,
    LEASE_TTL,
    Cluster,
    EtcdCluster,
    PodWatcher,
    Replica,
    chaos_agent,
    pod_ready,
    pod_terminating,
    versioned_deployment,
    wait_for,
)
from tests.e2e.conftest import kill_process_containers

pytestmark = [pytest.mark.chaos, pytest.mark.etcd, pytest.mark.timeout(90)]

APP = "ha"
REPLICAS = 4
MAX_SURGE = 1
MAX_UNAVAILABLE = 0
SECRETS = 20
TAKEOVER_DEADLINE = 15.0
START_DEADLINE = 30.0
ROLLOUT_DEADLINE = 45.0


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def deployment(version: str) -> workloads_pb2.Deployment:
    return versioned_deployment(APP, version, REPLICAS, max_surge=MAX_SURGE, max_unavailable=MAX_UNAVAILABLE)


def version_of(pod: Any) -> str:
    return next((e.value for e in pod.spec.containers[0].env if e.name == "VERSION"), "")


def secret(name: str, value: str) -> secret_pb2.Secret:
    s = secret_pb2.Secret(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    s.data["value"] = value.encode()
    return s


def bounds(state: dict[str, Any]) -> str | None:
    """maxSurge / maxUnavailable, counting every pod (an old one leaves only once its node stopped it)."""
    total = len(state)
    ready = sum(1 for p in state.values() if pod_ready(p) and not pod_terminating(p))
    if total > REPLICAS + MAX_SURGE or ready < REPLICAS - MAX_UNAVAILABLE:
        return f"{total} pods, {ready} ready: {sorted((version_of(p), pod_ready(p)) for p in state.values())}"
    return None


class Writer:
    """Creates Secrets one after another until stopped; keeps those acknowledged."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.acked: dict[str, str] = {}
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            name, value = f"during-{i}", f"written during the faults #{i}"
            try:
                self.client.create(secret(name, value))
            except ClientError:
                self.failed += 1  # unknown outcome: not counted as acknowledged
                time.sleep(0.1)
            else:
                self.acked[name] = value
            i += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@pytest.fixture
async def ha(etcd_cluster: EtcdCluster, tmp_path: Path) -> AsyncIterator[Cluster]:
    store = await EtcdStore.connect(etcd_cluster.endpoints)
    cluster = Cluster(",".join(etcd_cluster.endpoints), store, tmp_path)
    try:
        yield cluster
    finally:
        for replica in cluster.replicas:
            replica.stop()
        await store.close()


async def leader_of(cluster: Cluster) -> tuple[Replica | None, int]:
    """The replica the leader key names (None: none or unreadable) and the key's create revision."""
    try:
        kv = await cluster.store.get(LEADER_KEY)
    except UnavailableError:
        return None, 0
    if kv is None:
        return None, 0
    value = kv.value.decode()
    return next((r for r in cluster.replicas if value.endswith(":" + r.address)), None), kv.create_revision


async def test_leader_and_etcd_member_killed_during_a_rollout(
    ha: Cluster, etcd_cluster: EtcdCluster, tmp_path: Path, report: Callable[[str], None]
) -> None:
    replicas = [ha.replica(f"r{i}") for i in range(3)]
    replicas[0].start()
    await ha.wait_leader(replicas[0], START_DEADLINE)
    for r in replicas[1:]:
        r.start()
    for r in replicas[1:]:
        await wait_for(lambda r=r: r.events("following"), START_DEADLINE, f"{r.name} to follow", r)  # type: ignore[misc]
    servers = ",".join(r.address for r in replicas)
    credentials = replicas[0].credentials()
    client = Client(servers, credentials, timeout=10)
    token = (await call(client.create_token, "node", 3600)).token
    agents = [chaos_agent(f"ha-n{i}", replicas, token, tmp_path, f"127.0.0.{i + 2}") for i in range(3)]
    watcher: PodWatcher | None = None
    writer: Writer | None = None
    try:
        for agent in agents:
            agent.start()

        async def nodes_ready() -> bool:
            items, _ = await call(client.list, "nodes")
            ready = {
                n.metadata.name
                for n in items
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
            }
            return ready >= {a.name for a in agents}

        await wait_for(nodes_ready, START_DEADLINE, "the agents' nodes to be Ready", replicas[0])

        # Objects that must survive, and the workload at its first version.
        for i in range(SECRETS):
            await call(client.create, secret(f"before-{i}", f"created before the faults #{i}"))
        await call(client.apply, deployment("v1"))

        async def pods() -> list[Any]:
            items, _ = await call(client.list, "pods", "default", selector=f"app={APP}")
            return list(items)

        async def settled(version: str) -> bool:
            current = await pods()
            return len(current) == REPLICAS and all(
                pod_ready(p) and not pod_terminating(p) and version_of(p) == version for p in current
            )

        await wait_for(lambda: settled("v1"), START_DEADLINE, "4 Ready pods of v1", replicas[0])
        old_uids = {p.metadata.uid for p in await pods()}

        watcher = PodWatcher(servers, credentials, f"app={APP}", bounds)
        await wait_for(lambda: watcher.relists, 10, "the watcher to list the pods")
        polls = 0
        poll_violations: list[str] = []

        async def poll(version: str) -> bool:
            """One invariant check on a fresh list; true once the rollout to ``version`` is done."""
            nonlocal polls
            try:
                current = await pods()
            except ClientError:
                return False  # every server tried is unavailable for now: the deadline decides
            polls += 1
            names = [p.metadata.name for p in current]
            if len(names) != len(set(names)):
                poll_violations.append(f"poll {polls}: a pod name twice: {sorted(names)}")
            problem = bounds({p.metadata.name: p for p in current})
            if problem:
                poll_violations.append(f"poll {polls}: {problem}")
            return len(current) == REPLICAS and all(
                pod_ready(p) and not pod_terminating(p) and version_of(p) == version for p in current
            )

        # The rollout starts; the faults come once its first new pod exists.
        rollout_started = time.monotonic()
        await call(client.apply, deployment("v2"))

        async def new_pod_exists() -> bool:
            await poll("v2")
            return any(version_of(p) == "v2" for p in await pods())

        await wait_for(new_pod_exists, 20, "the first v2 pod", replicas[0])
        at_kill = await pods()
        leader, term = await leader_of(ha)
        assert leader is not None
        writer = Writer(Client(servers, credentials, timeout=10))
        await asyncio.sleep(0.3)  # a few writes acknowledged before the faults
        member = etcd_cluster.members[0]  # the member every replica talks to (first endpoint)
        killed_at = time.monotonic()
        leader.kill9()
        etcd_cluster.kill9(member)

        async def taken_over() -> bool:
            await poll("v2")
            now, new_term = await leader_of(ha)
            return now is not None and now is not leader and new_term > term

        await wait_for(taken_over, TAKEOVER_DEADLINE, "another replica to lead", replicas[1])
        takeover = time.monotonic() - killed_at
        new_leader, _ = await leader_of(ha)
        assert new_leader is not None

        await wait_for(lambda: poll("v2"), ROLLOUT_DEADLINE, "the rollout to v2 to complete", new_leader)
        rollout = time.monotonic() - rollout_started
        after_kill = time.monotonic() - killed_at

        await asyncio.sleep(1.0)  # the writer keeps writing through the new leader a little
        writer.stop()
        watcher.stop()

        final = await pods()
        assert len(final) == REPLICAS
        assert {version_of(p) for p in final} == {"v2"}
        assert all(pod_ready(p) for p in final)
        assert not {p.metadata.uid for p in final} & old_uids
        d = await call(client.get, "deployments", APP, "default")
        assert d.spec.template.spec.containers[0].env[0].value == "v2"

        async def status_caught_up() -> bool:
            got = await call(client.get, "deployments", APP, "default")
            s = got.status
            return bool(
                s.observed_generation >= got.metadata.generation
                and s.updated_replicas == REPLICAS
                and s.ready_replicas == REPLICAS
                and s.replicas == REPLICAS
            )

        await wait_for(status_caught_up, 15, "the Deployment's status to catch up", new_leader)

        # One pod per slot: the new ReplicaSet got exactly REPLICAS pods over the whole rollout.
        new_uids = {p.metadata.uid for p in final}
        sets, _ = await call(client.list, "replicasets", "default")
        owned = [rs for rs in sets if rs.metadata.name.startswith(APP + "-")]
        assert sorted(rs.spec.replicas for rs in owned) == [0, REPLICAS]
        seen_new = {uid for uids in watcher.uids.values() for uid in uids if uid not in old_uids}
        # Secrets: every one created before, and every acknowledged write during the faults.
        secrets, _ = await call(client.list, "secrets", "default")
        by_name = {s.metadata.name: s.data["value"].decode() for s in secrets if "value" in s.data}
        missing = [
            name
            for name, value in [(f"before-{i}", f"created before the faults #{i}") for i in range(SECRETS)]
            + list(writer.acked.items())
            if by_name.get(name) != value
        ]

        report(
            f"HA: 3 replicas + 3-member etcd, {len(agents)} agents; kill -9 of leader {leader.name} and etcd "
            f"member {member.name} with {sum(version_of(p) == 'v2' for p in at_kill)}/{REPLICAS} new pods: "
            f"{new_leader.name} leads after {takeover:.2f} s (lease ttl {LEASE_TTL} s); rollout of {REPLICAS} pods "
            f"took {rollout:.2f} s ({after_kill:.2f} s after the kills); bounds checked on {watcher.events} watch "
            f"events ({watcher.relists} lists) and {polls} polls, violations: "
            f"{len(watcher.violations) + len(poll_violations)}; new pods seen {len(seen_new)}; "
            f"writes during faults: {len(writer.acked)} acknowledged, {writer.failed} failed; "
            f"{len(missing)} objects missing"
        )
        assert watcher.violations == [], watcher.violations[:5]
        assert poll_violations == [], poll_violations[:5]
        assert watcher.reused_names() == {}
        assert seen_new == new_uids, f"new pods beyond one per slot: {seen_new - new_uids}"
        assert missing == []
        assert len(writer.acked) > 0
        client.close()
        writer.client.close()
    finally:
        if writer is not None:
            writer.stop()
        if watcher is not None:
            watcher.stop()
        for agent in agents:
            agent.stop()
            kill_process_containers(agent.data_dir)
        with contextlib.suppress(Exception):
            client.close()
