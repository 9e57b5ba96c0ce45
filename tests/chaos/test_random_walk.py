"""A seeded random walk of operations on a Deployment while control-plane
replicas are killed: two `corral server` replicas on one etcd (lease ttl
3 s), two `corral agent --runtime process`.

Each step is drawn from: apply a new version (an env var), `rollout undo`,
`scale` (1..5), `rollout pause`, `rollout resume`, delete a random pod, and
`kill -9` of a replica (restarted at once). Between steps the test polls for
a random 0.5-2.5 s. The seed is printed; CORRAL_CHAOS_SEED replays a walk and
CORRAL_CHAOS_STEPS makes it longer (default 20).

Checked on every poll and after every pod event a watcher sees: no pod name
twice (nor one name with two uids over the walk), no pod bound to a node that
does not exist, never more live pods than the largest replica count plus
maxSurge, no pod of a version never applied, observed generation never ahead
of generation. After the walk (resumed if paused): the Deployment converges
within 45 s: exactly spec.replicas pods, all Ready, all of the desired
template, observed generation caught up, status counts right, every other
ReplicaSet scaled to 0 with no pods left.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.client import Client, ClientError, ConflictError, NotFoundError
from protos.corral.v1 import workloads_pb2
from protos.deployments import without_hash
from tests.chaos.conftest import (
    Cluster,
    PodWatcher,
    chaos_agent,
    pod_ready,
    pod_terminating,
    versioned_deployment,
    wait_for,
)
from tests.e2e.conftest import Cli, kill_process_containers

STEPS = int(os.environ.get("CORRAL_CHAOS_STEPS") or 20)
pytestmark = [pytest.mark.chaos, pytest.mark.etcd, pytest.mark.timeout(90 + 4 * max(0, STEPS - 20))]

APP = "walk"
MAX_REPLICAS = 5
MAX_SURGE = 1
MAX_UNAVAILABLE = 1
START_DEADLINE = 30.0
CONVERGE_DEADLINE = 45.0
OPERATIONS = ["apply", "undo", "scale", "pause", "resume", "delete-pod", "kill-replica"]


def deployment(version: str, replicas: int) -> workloads_pb2.Deployment:
    return versioned_deployment(APP, version, replicas, max_surge=MAX_SURGE, max_unavailable=MAX_UNAVAILABLE)


def version_of(obj: Any) -> str:
    """The VERSION env of a pod or of a pod template's first container."""
    spec = obj.spec if hasattr(obj.spec, "containers") else obj.spec.template.spec
    return next((e.value for e in spec.containers[0].env if e.name == "VERSION"), "")


def set_version(d: workloads_pb2.Deployment, version: str) -> None:
    for e in d.spec.template.spec.containers[0].env:
        if e.name == "VERSION":
            e.value = version


def live(pods: Any) -> list[Any]:
    return [p for p in pods if not pod_terminating(p)]


class Walk:
    def __init__(self, cluster: Cluster, client: Client, cli: Cli, nodes: set[str], rng: random.Random) -> None:
        self.cluster, self.client, self.cli, self.nodes, self.rng = cluster, client, cli, nodes, rng
        self.applied = {"v0"}
        self.next_version = 1
        self.expected_version: str | None = "v0"  # None: set by an undo (read from the server)
        self.paused = False
        self.polls = 0
        self.violations: list[str] = []
        self.log: list[str] = []
        self.kills = 0
        self.pods_deleted = 0
        self.max_live = 0

    # -- invariants ---------------------------------------------------------------------------

    def check_pods(self, pods: dict[str, Any]) -> str | None:
        """What must hold of the pods at any moment (also called by the watcher, on its thread)."""
        alive = live(pods.values())
        self.max_live = max(self.max_live, len(alive))
        if len(alive) > MAX_REPLICAS + MAX_SURGE:
            return f"{len(alive)} live pods, more than {MAX_REPLICAS} + {MAX_SURGE}"
        strangers = {p.metadata.name: p.spec.node_name for p in pods.values() if p.spec.node_name not in self.nodes}
        strangers = {k: v for k, v in strangers.items() if v}
        if strangers:
            return f"pods on nodes that do not exist: {strangers}"
        unknown = {version_of(p) for p in pods.values()} - self.applied
        if unknown:
            return f"pods of versions never applied: {unknown}"
        return None

    async def poll(self) -> None:
        try:
            items, _ = await asyncio.to_thread(self.client.list, "pods", "default", selector=f"app={APP}")
            d = await asyncio.to_thread(self.client.get, "deployments", APP, "default")
        except ClientError:
            return  # both servers unavailable for a moment (one just killed): nothing to check
        self.polls += 1
        names = [p.metadata.name for p in items]
        if len(names) != len(set(names)):
            self.violations.append(f"poll {self.polls}: a pod name twice: {sorted(names)}")
        problem = self.check_pods({p.metadata.name: p for p in items})
        if problem:
            self.violations.append(f"poll {self.polls}: {problem}")
        if d.status.observed_generation > d.metadata.generation:
            self.violations.append(f"poll {self.polls}: observed generation ahead of generation")

    async def dwell(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.poll()
            await asyncio.sleep(0.2)

    # -- operations ---------------------------------------------------------------------------

    def run(self, *args: str, expected_errors: tuple[str, ...] = ()) -> str:
        """A CLI command; retried while no server answers; a refusal in ``expected_errors`` is an outcome."""
        for _ in range(10):
            result = self.cli.run(*args, timeout=30)
            if result.returncode == 0:
                return "ok"
            if any(e in result.stderr for e in expected_errors):
                return "refused: " + result.stderr.strip().splitlines()[-1]
            if "unavailable" not in result.stderr.lower():
                raise AssertionError(f"corral {' '.join(args)} failed: {result.stdout}{result.stderr}")
            time.sleep(0.5)
        raise AssertionError(f"corral {' '.join(args)}: no server answered")

    def modify(self, change: Callable[[workloads_pb2.Deployment], None]) -> None:
        for _ in range(20):
            try:
                d = self.client.get("deployments", APP, "default")
                assert isinstance(d, workloads_pb2.Deployment)
                change(d)
                self.client.update(d)
                return
            except (ConflictError, ClientError) as e:
                if isinstance(e, NotFoundError):
                    raise
                time.sleep(0.2)
        raise AssertionError("the Deployment could not be updated")

    async def step(self, op: str) -> str:
        if op == "apply":
            version = f"v{self.next_version}"
            self.next_version += 1
            self.applied.add(version)  # before the write: a pod of it may show up at once
            await asyncio.to_thread(self.modify, lambda d: set_version(d, version))
            self.expected_version = version
            return version
        if op == "undo":
            outcome = await asyncio.to_thread(
                self.run, "rollout", "undo", f"deployment/{APP}",
                expected_errors=("paused deployment", "no rollout history"),
            )  # fmt: skip
            if outcome == "ok":
                self.expected_version = None
            return outcome
        if op == "scale":
            n = self.rng.randint(1, MAX_REPLICAS)
            scaled: str = await asyncio.to_thread(self.run, "scale", f"deployment/{APP}", "--replicas", str(n))
            return f"{n}: {scaled}"
        if op in ("pause", "resume"):
            outcome = await asyncio.to_thread(
                self.run, "rollout", op, f"deployment/{APP}", expected_errors=("already paused", "not paused")
            )
            if outcome == "ok":
                self.paused = op == "pause"
            return outcome
        if op == "delete-pod":
            items, _ = await asyncio.to_thread(self.client.list, "pods", "default", selector=f"app={APP}")
            if not items:
                return "no pod"
            pod = self.rng.choice(items)
            try:
                await asyncio.to_thread(self.client.delete, "pods", pod.metadata.name, "default")
            except NotFoundError:
                return f"{pod.metadata.name} already gone"
            self.pods_deleted += 1
            return str(pod.metadata.name)
        if op == "kill-replica":
            replica = self.rng.choice(self.cluster.replicas)
            leading = (await self.cluster.leader_value()).endswith(":" + replica.address)
            replica.kill9()
            replica.start()
            self.kills += 1
            return f"{replica.name}{' (the leader)' if leading else ''}"
        raise AssertionError(op)

    # -- convergence --------------------------------------------------------------------------

    async def converged(self) -> str | None:
        """None once the Deployment is what its spec says; else what is still off."""
        try:
            d = await asyncio.to_thread(self.client.get, "deployments", APP, "default")
            pods, _ = await asyncio.to_thread(self.client.list, "pods", "default", selector=f"app={APP}")
            sets, _ = await asyncio.to_thread(self.client.list, "replicasets", "default")
        except ClientError as e:
            return f"unavailable: {e}"
        await self.poll()
        want = d.spec.replicas
        if d.status.observed_generation < d.metadata.generation:
            return "observed generation behind"
        current = [rs for rs in sets if any(o.name == APP for o in rs.metadata.owner_references)]
        new = [rs for rs in current if without_hash(rs.spec.template) == without_hash(d.spec.template)]
        if len(new) != 1:
            return f"{len(new)} ReplicaSets of the desired template"
        new_hash = new[0].metadata.labels.get("pod-template-hash", "")
        old = [rs for rs in current if rs is not new[0]]
        if new[0].spec.replicas != want or any(rs.spec.replicas for rs in old):
            return f"ReplicaSets {[(rs.metadata.name, rs.spec.replicas) for rs in current]}"
        if len(pods) != want:
            return f"{len(pods)} pods, want {want}"
        if not all(pod_ready(p) and not pod_terminating(p) for p in pods):
            return "not every pod Ready"
        if any(p.metadata.labels.get("pod-template-hash") != new_hash for p in pods):
            return "pods of an old ReplicaSet left"
        if any(version_of(p) != version_of(d) for p in pods):
            return "a pod of another version"
        s = d.status
        if (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas) != (want,) * 4:
            return f"status counts {(s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas)}"
        return None


async def test_random_walk_converges(cluster: Cluster, tmp_path: Path, report: Callable[[str], None]) -> None:
    seed = int(os.environ.get("CORRAL_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    report(f"random walk: seed {seed}, {STEPS} steps (replay: CORRAL_CHAOS_SEED={seed})")
    rng = random.Random(seed)

    first, second = cluster.replica("a"), cluster.replica("b")
    first.start()
    await cluster.wait_leader(first, START_DEADLINE)
    second.start()
    await wait_for(lambda: second.events("following"), START_DEADLINE, "b to follow", second)
    servers = f"{first.address},{second.address}"
    credentials = first.credentials()
    client = Client(servers, credentials, timeout=10)
    cli = Cli({**first.env, "CORRAL_SERVER": servers})
    token = (await asyncio.to_thread(client.create_token, "node", 3600)).token
    agents = [chaos_agent(f"walk-n{i}", cluster.replicas, token, tmp_path, f"127.0.0.{i + 2}") for i in range(2)]
    watcher: PodWatcher | None = None
    try:
        for agent in agents:
            agent.start()
        names = {a.name for a in agents}

        async def nodes_ready() -> bool:
            items, _ = await asyncio.to_thread(client.list, "nodes")
            return {n.metadata.name for n in items if any(c.type == "Ready" and c.status == "True"
                                                         for c in n.status.conditions)} >= names  # fmt: skip

        await wait_for(nodes_ready, START_DEADLINE, "the agents' nodes to be Ready", first)
        walk = Walk(cluster, client, cli, names, rng)
        await asyncio.to_thread(client.apply, deployment("v0", 3))

        async def ready_at_start() -> bool:
            return await walk.converged() is None

        await wait_for(ready_at_start, START_DEADLINE, "3 Ready pods of v0", first)
        watcher = PodWatcher(servers, credentials, f"app={APP}", walk.check_pods)

        started = time.monotonic()
        for i in range(STEPS):
            op = rng.choice(OPERATIONS)
            outcome = await walk.step(op)
            walk.log.append(f"{i + 1}:{op}={outcome}")
            await walk.dwell(rng.uniform(0.5, 2.5))
        walked = time.monotonic() - started

        if walk.paused:
            walk.log.append("end:resume=" + await asyncio.to_thread(walk.run, "rollout", "resume", f"deployment/{APP}"))
        end = time.monotonic()
        last: list[str | None] = [None]

        async def settled() -> bool:
            last[0] = await walk.converged()
            return last[0] is None

        try:
            await wait_for(settled, CONVERGE_DEADLINE, "the Deployment to converge")
        except AssertionError as e:
            raise AssertionError(f"{e}; still: {last[0]}; seed {seed}; steps: {walk.log}") from None
        converged_in = time.monotonic() - end
        watcher.stop()

        d = await asyncio.to_thread(client.get, "deployments", APP, "default")
        leader_value = await cluster.leader_value()
        leader = next((r.name for r in cluster.replicas if leader_value.endswith(":" + r.address)), "-")
        report(
            f"random walk seed {seed}: {STEPS} steps in {walked:.1f} s ({walk.kills} replica kills, "
            f"{walk.pods_deleted} pods deleted), converged {converged_in:.2f} s after the walk to "
            f"{d.spec.replicas} x {version_of(d)}; invariants checked on {walk.polls} polls and "
            f"{watcher.events} watch events ({watcher.relists} lists), "
            f"most live pods {walk.max_live}; "
            f"leader at the end {leader}; steps: {' '.join(walk.log)}"
        )
        assert walk.violations == [], (seed, walk.violations[:5])
        assert watcher.violations == [], (seed, watcher.violations[:5])
        assert watcher.reused_names() == {}, seed
        if walk.expected_version is not None:
            assert version_of(d) == walk.expected_version, seed
    finally:
        if watcher is not None:
            watcher.stop()
        for agent in agents:
            agent.stop()
            kill_process_containers(agent.data_dir)
        client.close()
