"""Two control-plane replicas in one process against a real etcd: one leads,
both serve; the other takes over when the leader stops; clients and agents
given several servers get past one that is down."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from agent.node.session import Session, SessionConfig, first_server
from agent.node.status import node_status
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime.fake import FakeRuntime
from controlplane.leader.elector import Elector
from controlplane.server import RunningServer, ServerConfig, start
from corral import client as api
from corral.common.backoff import CrashLoopBackoff, ExponentialBackoff
from protos.corral.v1 import meta_pb2, workloads_pb2
from tests.pki import TestCluster, admin_of, node_identity, node_of

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]
T = TypeVar("T")
WAIT = 20.0
DEAD = "127.0.0.1:1"  # nothing listens on port 1


@dataclass
class Replica:
    running: RunningServer
    stack: AsyncExitStack

    @property
    def elector(self) -> Elector:
        assert self.running.elector is not None
        return self.running.elector


async def wait_for(check: Callable[[], object], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` (plain or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
async def replicas(etcd_endpoint: str) -> AsyncIterator[list[Replica]]:
    prefix = f"/it/{uuid.uuid4().hex}"
    started: list[Replica] = []
    try:
        for _ in range(2):
            stack = AsyncExitStack()
            config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=prefix, lease_ttl=3)
            started.append(Replica(await start(config, stack), stack))
        yield started
    finally:
        for replica in started:
            await replica.stack.aclose()


async def items(client: api.Client, kind: str) -> list[Any]:
    listed, _ = await call(client.list, kind)
    return listed


def deployment(name: str) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name=name))
    d.spec.replicas = 1
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image="httpd:2.4")
    return d


def leader_of(replicas: list[Replica]) -> Replica | None:
    leading = [r for r in replicas if r.elector.leading.is_set()]
    assert len(leading) <= 1, "two replicas lead at once in one process"
    return leading[0] if leading else None


async def test_one_replica_leads_both_serve_and_the_other_takes_over(replicas: list[Replica]) -> None:
    leader = await wait_for(lambda: leader_of(replicas), "a leader")
    follower = next(r for r in replicas if r is not leader)
    term = leader.elector.term
    assert term is not None

    # A write through the follower's API is acted on by the leader's controllers.
    client = api.Client(follower.running.address, admin_of(follower.running))
    await call(client.apply, deployment("web"))
    await wait_for(lambda: items(client, "replicasets"), "the leader to create a ReplicaSet")

    await leader.stack.aclose()  # the leader stops: it resigns, the key goes at once

    await wait_for(lambda: follower.elector.leading.is_set(), "the follower to lead")
    new_term = follower.elector.term
    assert new_term is not None and new_term.revision > term.revision
    await call(client.apply, deployment("after"))

    async def created_after() -> list[Any]:
        return [rs for rs in await items(client, "replicasets") if rs.metadata.name.startswith("after-")]

    sets = await wait_for(created_after, "the new leader's controllers to act")
    assert len(sets) == 1
    client.close()


async def test_a_client_given_several_servers_gets_past_a_dead_one(replicas: list[Replica]) -> None:
    live = replicas[0].running.address
    admin = admin_of(replicas[0].running)
    client = api.Client(f"{DEAD},{live}", admin, timeout=5)

    await call(client.apply, deployment("web"))
    got = await call(client.get, "deployment", "web")
    assert got.metadata.name == "web"
    assert client.address == live  # it stays with the server that answered

    fresh = api.Client(f"{DEAD},{live}", admin, timeout=5)
    events = await call(lambda: next(iter(fresh.watch("deployments"))))
    assert events.obj.metadata.name == "web"

    with pytest.raises(api.ServerUnavailableError, match="127.0.0.1:1, 127.0.0.1:2"):
        await call(api.Client("127.0.0.1:1,127.0.0.1:2", TestCluster().admin(), timeout=5).get, "deployment", "web")
    client.close()
    fresh.close()


async def test_an_agent_given_several_servers_moves_to_the_next_on_reconnect(
    replicas: list[Replica], tmp_path: Path
) -> None:
    live = replicas[1].running.address
    name = next(n for n in (f"n{i}" for i in range(1, 40)) if first_server(n, 2) == 0)  # starts on DEAD
    settings = WorkerSettings(
        node_name=name, host_ip="127.0.0.1", poll_interval=0.05, backoff=CrashLoopBackoff(initial=0.1, cap=0.4)
    )
    manager = PodManager({"fake": FakeRuntime()}, settings, tmp_path)
    config = SessionConfig(
        server=f"{DEAD},{live}", node_name=name, labels={}, backoff=ExponentialBackoff(initial=0.05, cap=0.2)
    )
    session = Session(
        config,
        manager,
        node_status(address="127.0.0.1", runtimes=["fake"]),
        identity=node_identity(node_of(replicas[1].running, name), tmp_path),
    )

    with capture_logs() as logs:
        task = asyncio.create_task(session.run())
        try:
            await wait_for(lambda: session.connected.is_set(), "the session on the live server")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    lost = [entry for entry in logs if entry["event"] == "session_lost"]
    established = [entry for entry in logs if entry["event"] == "session_established"]
    assert lost and established[0]["server"] == live
    node = await call(api.Client(live, admin_of(replicas[1].running)).get, "node", name)
    assert node.metadata.name == name


@pytest.fixture
async def sharing_a_ca(etcd_endpoint: str, tmp_path: Path) -> AsyncIterator[list[Replica]]:
    """Two replicas with one data dir: one cluster CA (and secrets key), as replicas are deployed."""
    prefix = f"/it/{uuid.uuid4().hex}"
    started: list[Replica] = []
    try:
        for _ in range(2):
            stack = AsyncExitStack()
            config = ServerConfig(
                listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=prefix, lease_ttl=3, data_dir=tmp_path / "plane"
            )
            started.append(Replica(await start(config, stack), stack))
        yield started
    finally:
        for replica in started:
            await replica.stack.aclose()


async def test_agents_given_every_replica_spread_over_them_and_each_serves_its_own(
    sharing_a_ca: list[Replica], tmp_path: Path
) -> None:
    replicas = sharing_a_ca
    servers = ",".join(r.running.address for r in replicas)
    candidates = [f"edge-{i}" for i in range(40)]
    names = [n for n in candidates if first_server(n, 2) == 0][:2] + [n for n in candidates if first_server(n, 2) == 1][
        :2
    ]
    sessions = []
    for name in names:
        settings = WorkerSettings(
            node_name=name, host_ip="127.0.0.1", poll_interval=0.05, backoff=CrashLoopBackoff(initial=0.1, cap=0.4)
        )
        manager = PodManager({"fake": FakeRuntime()}, settings, tmp_path / name)
        config = SessionConfig(
            server=servers, node_name=name, labels={}, backoff=ExponentialBackoff(initial=0.05, cap=0.2)
        )
        identity = node_identity(node_of(replicas[0].running, name), tmp_path / name)
        sessions.append(
            Session(config, manager, node_status(address="127.0.0.1", runtimes=["fake"]), identity=identity)
        )
    tasks = [asyncio.create_task(s.run()) for s in sessions]
    try:
        served = [r.running.nodes for r in replicas]
        assert served[0] is not None and served[1] is not None

        def streams() -> bool:
            return all(name in served[first_server(name, 2)].connected for name in names)  # type: ignore[union-attr]

        await wait_for(streams, "each agent's assignment stream on the replica its name picks")
        assert served[0].connected and served[1].connected
        assert served[0].connected.isdisjoint(served[1].connected)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
