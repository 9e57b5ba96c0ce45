"""Leadership under faults: two real `corral server` replicas on one etcd,
lease ttl 3 s.

- kill -9 of the leader: the other takes over (time printed) and its
  controllers act.
- SIGSTOP of the leader while it has a write in flight, past its lease: the
  other takes over and acts; SIGCONT: the old leader's late write is refused
  by the fence. With fencing turned off (test-only switch) the very same
  scenario lets the stale write land, so the test shows it can see the
  anomaly it claims fencing prevents.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from controlplane.leader.testhooks import DISABLE_FENCING_ENV, WRITE_DELAY_FILE_ENV
from controlplane.store.base import EventType, WatchEvent
from corral.client import Client
from protos.corral.v1 import meta_pb2, workloads_pb2
from tests.chaos.conftest import LEADER_KEY, LEASE_TTL, Cluster, Replica, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.etcd, pytest.mark.timeout(90)]
T = TypeVar("T")

TAKEOVER_DEADLINE = 15.0
START_DEADLINE = 30.0
PODS = "/corral/registry/pods/"


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def deployment(name: str) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name=name))
    d.spec.replicas = 1
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image="httpd:2.4")
    return d


def replica_set(name: str, replicas: int) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    rs.spec.replicas = replicas
    rs.spec.selector.match_labels["app"] = name
    rs.spec.template.metadata.labels["app"] = name
    rs.spec.template.spec.containers.add(name="main", image="httpd:2.4")
    return rs


async def start_pair(cluster: Cluster, **leader_env: str) -> tuple[Replica, Replica]:
    """Start the first replica, wait until it leads, then the second (a follower)."""
    shared = {k: v for k, v in leader_env.items() if k == DISABLE_FENCING_ENV}
    first = cluster.replica("first", **leader_env)
    first.start()
    await cluster.wait_leader(first, START_DEADLINE)
    second = cluster.replica("second", **shared)
    second.start()
    await wait_for(lambda: second.events("following"), START_DEADLINE, "the second replica to follow", second)
    return first, second


async def pods_of(client: Client, app: str) -> list[Any]:
    items, _ = await call(client.list, "pods", "default", selector=f"app={app}")
    return items


async def replica_sets(client: Client) -> list[Any]:
    items, _ = await call(client.list, "replicasets", "default")
    return items


async def creations_since(cluster: Cluster, prefix: str, after: int) -> list[WatchEvent]:
    """Keys under ``prefix`` created after revision ``after``, from etcd's own
    history (read up to a marker written now, so the read has an end)."""
    marker = prefix + "~chaos-marker"
    until = await cluster.store.create(marker, b"")
    seen: list[WatchEvent] = []
    events = cluster.store.watch(prefix, start_revision=after + 1)
    async with contextlib.aclosing(events), asyncio.timeout(10):
        async for event in events:
            if event.revision >= until:
                break
            seen.append(event)
    await cluster.store.delete(marker)
    return [e for e in seen if e.type is EventType.PUT and e.prev_value is None]


async def test_kill9_of_the_leader_another_takes_over_and_acts(cluster: Cluster, report: Callable[[str], None]) -> None:
    first, second = await start_pair(cluster)
    old_term = await cluster.store.get(LEADER_KEY)
    assert old_term is not None

    killed_at = time.monotonic()
    first.kill9()
    await cluster.wait_leader(second, TAKEOVER_DEADLINE)
    takeover = time.monotonic() - killed_at

    new_term = await cluster.store.get(LEADER_KEY)
    assert new_term is not None and new_term.create_revision > old_term.create_revision
    # Clients given both servers move on from the dead one.
    client = Client(f"{first.address},{second.address}", second.credentials(), timeout=10)
    await call(client.apply, deployment("after-takeover"))
    created = time.monotonic()
    sets = await wait_for(
        lambda: replica_sets(client), TAKEOVER_DEADLINE, "the new leader's controllers to create the ReplicaSet", second
    )
    acted = time.monotonic() - created
    assert [rs.metadata.name.startswith("after-takeover-") for rs in sets] == [True]
    assert second.events("leader_elected")[0]["term"] == new_term.create_revision
    client.close()
    report(
        f"kill -9 of the leader: takeover after {takeover:.2f} s (lease ttl {LEASE_TTL} s); "
        f"a Deployment created then got its ReplicaSet in {acted:.2f} s"
    )


@pytest.mark.parametrize(
    "fencing", [pytest.param(True, id="fenced"), pytest.param(False, id="unfenced-shows-the-anomaly")]
)
async def test_a_paused_leaders_pending_write_is_refused_after_takeover(
    cluster: Cluster, report: Callable[[str], None], fencing: bool
) -> None:
    hold = cluster.tmp / "hold-writes"
    env = {WRITE_DELAY_FILE_ENV: str(hold)}
    if not fencing:
        env[DISABLE_FENCING_ENV] = "1"
    first, second = await start_pair(cluster, **env)
    assert first.events("TEST_ONLY_WRITE_DELAY")
    assert bool(first.events("TEST_ONLY_FENCING_DISABLED")) is not fencing
    client = Client(second.address, second.credentials(), timeout=10)

    # The leader decides to create a pod; its request is held on the way out.
    hold.touch()
    await call(client.create, replica_set("stale", 1))
    held = await wait_for(
        lambda: [e for e in first.events("test_write_held") if e["key"].startswith(PODS + "default/stale-")],
        TAKEOVER_DEADLINE,
        "the leader's pod creation to be in flight",
        first,
    )
    pending_key = held[0]["key"]

    # It is paused past its lease; the other replica takes over and acts.
    first.signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    await cluster.wait_leader(second, TAKEOVER_DEADLINE)
    takeover = time.monotonic() - paused_at
    await wait_for(lambda: pods_of(client, "stale"), TAKEOVER_DEADLINE, "the new leader to create the pod", second)
    before_resume = await cluster.store.current_revision()

    # It wakes up with its write still in flight.
    hold.unlink()
    first.signal(signal.SIGCONT)
    released = await wait_for(
        lambda: [e for e in first.events("test_write_released") if e["key"] == pending_key],
        TAKEOVER_DEADLINE,
        "the held write to be sent",
        first,
    )
    lost = await wait_for(
        lambda: first.events("leadership_lost"), TAKEOVER_DEADLINE, "the old leader to step down", first
    )

    created_since = await creations_since(cluster, PODS, before_resume)
    outcome = released[0]["outcome"]
    report(
        f"SIGSTOP of the leader ({'fenced' if fencing else 'FENCING OFF'}): takeover after {takeover:.2f} s; "
        f"the old leader's pending write on resume: {outcome}; pods created after resume: "
        f"{[c.key.rsplit('/', 1)[1] for c in created_since]}; old leader stepped down: {lost[0]['reason']!r}"
    )
    if fencing:
        assert outcome == "FencedError"
        assert created_since == []  # nothing changed by the old leader
        assert len(await pods_of(client, "stale")) == 1
        assert await cluster.store.get(pending_key) is None
    else:  # the anomaly fencing exists for: a deposed leader's write lands
        assert outcome == "written"
        assert [c.key for c in created_since] == [pending_key]
    client.close()
