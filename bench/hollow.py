"""Hollow nodes: cheap simulated nodes that speak the real NodeService protocol,
as kubemark's hollow kubelets do.

Each hollow node runs the real agent's session (`agent.node.session.Session`):
its own gRPC channel with its own mutual-TLS node certificate, Register, the
heartbeats, the WatchAssignments stream, the StreamStatus reports (the agent's
`StatusOutbox` and `StatusReports`, batched as a real agent batches them), the
Tunnel, the WatchServices stream (into a real `ServiceTable` with no proxy
behind it) and a ReportMetrics call every `--metrics-period` seconds, or at
the longer period the control plane hands out on a large cluster, as the
agent does (the agent's `MetricsSampler`). What the server sees is what a
real agent sends.

What is hollow is the pods side (`HollowPods`, in place of the agent's
`PodManager`): no worker per pod, no poll loop, no assignment journal on disk.
Containers live in the in-memory `FakeRuntime` and change state on events
only: a pod new in an assignment set starts after `--start-delay` and is
reported once, Running (the status built by the agent's own
`lifecycle.pod_status`, probes taken as passed); a pod that gets a
deletionTimestamp is reported not Ready at once, stopped after the agent's
termination drain (`--termination-drain`, the agent's 2 s default, when it was
Ready) and reported terminated (again every 5 s until the control plane drops
it, as the agent does); a pod dropped from the set is forgotten. Not
simulated: the node proxy and DNS server (routes are applied to the table and
go nowhere), probes, restarts, volumes, hooks and spec changes of a running
pod.

Several processes (`--processes N`) each serve a share of the nodes, so one
Python process is not the limit:

    .venv/bin/python bench/hollow.py --server 127.0.0.1:7443 --nodes 1000 --processes 4 --token TOKEN

Each node joins with the token (`corral token create`; or CORRAL_TOKEN) for its
own node certificate, as `corral agent` does, and keeps it under
`--data-dir/<node name>/pki`: with a data dir kept across runs, a node whose
saved certificate was signed by the server's CA (the token pins it) does not
join again, as a restarted agent does not (see `bench/fleet.py`, which keeps
the cluster CA too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import structlog
import uvloop

from agent.network.routes import ServiceTable
from agent.node.credentials import NodeCredentials
from agent.node.metrics import CpuTimes, MetricsSampler
from agent.node.session import Session, SessionConfig
from agent.node.status import node_status
from agent.pods import containers, lifecycle
from agent.pods.lifecycle import ContainerTrack, StatusInputs
from agent.pods.outbox import StatusOutbox
from agent.pods.worker import TERMINATED_RESEND, container_name
from agent.probes.tracker import ProbeState
from agent.runtime import base
from agent.runtime.base import ContainerInfo, ContainerRuntime, ContainerSpec, State
from agent.runtime.fake import FakeRuntime
from corral.client import split_servers
from corral.common import logs
from corral.common.pki.join import join_address_for
from protos import pods as podutil
from protos.corral.v1 import node_pb2, node_service_pb2, pod_pb2
from protos.wellknown import DEFAULT_RUNTIME

log = structlog.get_logger(__name__)

HOLLOW_LABEL = "node.corral.io/hollow"
# What each fake container reports using, for the metrics reports.
CONTAINER_CPU_MILLIS = 5
CONTAINER_MEMORY_BYTES = 16 * 1024 * 1024


# -- the pure core ------------------------------------------------------------------


def share(total: int, processes: int, index: int) -> range:
    """The node indices process `index` of `processes` serves: contiguous, sizes differing by at most one."""
    if processes < 1 or not 0 <= index < processes:
        raise ValueError(f"share {index} of {processes}")
    size, extra = divmod(total, processes)
    start = index * size + min(index, extra)
    return range(start, start + size + (1 if index < extra else 0))


def node_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:04d}"


def node_address(index: int) -> str:
    return f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"


class Phase(Enum):
    STARTING = "starting"  # assigned; its containers start after the simulated start delay
    RUNNING = "running"
    TERMINATING = "terminating"  # a deletionTimestamp: draining, then stopped and reported terminated


@dataclass(frozen=True)
class Changes:
    """What an assignment set asks of a hollow node."""

    start: list[pod_pb2.Pod] = field(default_factory=list)
    wind_down: list[pod_pb2.Pod] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)


def changes(known: Mapping[str, Phase], assignment: node_service_pb2.AssignmentSet) -> Changes:
    """Pods to start (new, not being deleted), to wind down (being deleted, not yet winding
    down) and to drop (known, not in the set any more), in the set's order."""
    result = Changes()
    wanted: set[str] = set()
    for pod in assignment.pods:
        uid = pod.metadata.uid
        wanted.add(uid)
        phase = known.get(uid)
        if podutil.is_terminating(pod):
            if phase is not Phase.TERMINATING:
                result.wind_down.append(pod)
        elif phase is None:
            result.start.append(pod)
    result.drop.extend(uid for uid in known if uid not in wanted)
    return result


def fake_runs(
    pod: pod_pb2.Pod, started: Mapping[str, ContainerInfo], now_wall: datetime
) -> dict[str, list[ContainerInfo]]:
    """The containers' runs as the runtime would list them: the app containers and sidecars
    `started` (by name), and every other init container completed (exit 0) at `now_wall`."""
    runs = {name: [info] for name, info in started.items()}
    for c in pod.spec.init_containers:
        if c.name not in runs and not podutil.is_sidecar(c):
            runs[c.name] = [
                ContainerInfo(
                    id=f"init-{pod.metadata.uid[:8]}-{c.name}",
                    name=c.name,
                    image=c.image,
                    labels={base.LABEL_CONTAINER: c.name, base.LABEL_ATTEMPT: "0"},
                    state=State.EXITED,
                    exit_code=0,
                    started_at=now_wall,
                    finished_at=now_wall,
                    reason="Completed",
                )
            ]
    return runs


def passed_probes(runs: Mapping[str, list[ContainerInfo]]) -> dict[str, ContainerTrack]:
    """Every container's probes as passed on its newest run (hollow nodes run no probes)."""
    return {
        name: ContainerTrack(
            liveness=ProbeState.SUCCESS,
            readiness=ProbeState.SUCCESS,
            startup=ProbeState.SUCCESS,
            probed_id=infos[-1].id,
        )
        for name, infos in runs.items()
        if infos
    }


def hollow_pod_status(
    pod: pod_pb2.Pod,
    runs: Mapping[str, list[ContainerInfo]],
    *,
    host_ip: str,
    runtime_name: str,
    now: float,
    now_wall: datetime,
    previous: pod_pb2.PodStatus,
) -> pod_pb2.PodStatus:
    """The status the agent reports for these runs (`lifecycle.pod_status`), probes passed."""
    inputs = StatusInputs(
        host_ip=host_ip,
        runtime_name=runtime_name,
        now_wall=now_wall.replace(microsecond=0),
        now=now,
        tracks=passed_probes(runs),
        terminating=podutil.is_terminating(pod),
    )
    return lifecycle.pod_status(pod, runs, inputs, previous)


# -- one node's pods ------------------------------------------------------------------


@dataclass
class _Pod:
    pod: pod_pb2.Pod
    phase: Phase
    status: pod_pb2.PodStatus
    task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, pod: pod_pb2.Pod, phase: Phase) -> _Pod:
        """A pod new to the node; its last status is the one the control plane has."""
        status = pod_pb2.PodStatus()
        status.CopyFrom(pod.status)
        return cls(pod, phase, status)


class HollowPods:
    """A hollow node's pods: what `Session` needs of the agent's `PodManager` (`AssignedPods`),
    with containers that change state on events only (see the module docstring)."""

    def __init__(self, node: str, host_ip: str, *, start_delay: float = 0.0, termination_drain: float = 2.0) -> None:
        self.node = node
        self.host_ip = host_ip
        self.start_delay = start_delay
        self.termination_drain = termination_drain
        self.runtime = FakeRuntime()
        self.outbox = StatusOutbox()
        self.epoch = 0
        self.pods: dict[str, _Pod] = {}
        self._group: asyncio.TaskGroup | None = None

    async def run(self) -> None:
        """Own the pods' short transition tasks until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            await asyncio.Event().wait()

    def assigned(self) -> list[pod_pb2.Pod]:
        """The pods of the node now (for the metrics sampler)."""
        return [p.pod for p in self.pods.values()]

    async def apply(self, assignment: node_service_pb2.AssignmentSet) -> bool:
        """Apply an authoritative set; False (and nothing done) when it is stale."""
        if assignment.epoch < self.epoch:
            return False
        self.epoch = assignment.epoch
        todo = changes({uid: p.phase for uid, p in self.pods.items()}, assignment)
        for uid in todo.drop:
            self._drop(uid)
        latest = {p.metadata.uid: p for p in assignment.pods}
        for uid, entry in self.pods.items():
            entry.pod = latest.get(uid, entry.pod)
        for pod in todo.start:
            new = self.pods[pod.metadata.uid] = _Pod.of(pod, Phase.STARTING)
            new.task = self._spawn(self._start(new))
        for pod in todo.wind_down:
            going = self.pods.get(pod.metadata.uid)
            if going is None:
                going = self.pods[pod.metadata.uid] = _Pod.of(pod, Phase.TERMINATING)
            elif going.task is not None:
                going.task.cancel()  # a start still under way: nothing more starts
            going.phase = Phase.TERMINATING
            going.task = self._spawn(self._wind_down(going))
        return True

    async def find_container(
        self, pod_uid: str, container: str, *, previous: bool
    ) -> tuple[ContainerRuntime, ContainerInfo] | None:
        return await containers.find_container([self.runtime], pod_uid, container, previous=previous)

    # -- transitions ------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._group is not None, "run() first"
        return self._group.create_task(self._guarded(work))

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """One pod's failure is logged, never fatal to the node (nor to the process's other nodes)."""
        try:
            await work
        except Exception:
            log.exception("hollow_pod_step_crashed", node=self.node)

    def _drop(self, uid: str) -> None:
        entry = self.pods.pop(uid)
        if entry.task is not None:
            entry.task.cancel()
        self.outbox.drop(uid)
        self._spawn(self._remove_containers(uid))

    async def _remove_containers(self, uid: str) -> None:
        for info in await self.runtime.list({base.LABEL_POD_UID: uid}):
            await self.runtime.remove(info.id)

    def _spec(self, pod: pod_pb2.Pod, container: pod_pb2.Container) -> ContainerSpec:
        m = pod.metadata
        labels = {
            base.LABEL_MANAGED: "true",
            base.LABEL_POD_UID: m.uid,
            base.LABEL_POD_NAME: m.name,
            base.LABEL_NAMESPACE: m.namespace,
            base.LABEL_CONTAINER: container.name,
            base.LABEL_NODE: self.node,
            base.LABEL_EPOCH: str(self.epoch),
            base.LABEL_ATTEMPT: "0",
        }
        return ContainerSpec(name=container_name(pod, container, 0), image=container.image, labels=labels)

    def _report(self, entry: _Pod, runs: Mapping[str, list[ContainerInfo]], *, terminated: bool = False) -> None:
        status = hollow_pod_status(
            entry.pod,
            runs,
            host_ip=self.host_ip,
            runtime_name=self.runtime.name,
            now=asyncio.get_running_loop().time(),
            now_wall=datetime.now(UTC),
            previous=entry.status,
        )
        entry.status = status
        self.outbox.put(entry.pod, status, terminated=terminated)

    async def _runs(self, entry: _Pod) -> dict[str, list[ContainerInfo]]:
        listed = await self.runtime.list({base.LABEL_POD_UID: entry.pod.metadata.uid})
        started = {i.labels[base.LABEL_CONTAINER]: i for i in listed}
        return fake_runs(entry.pod, started, datetime.now(UTC))

    async def _start(self, entry: _Pod) -> None:
        if self.start_delay > 0:
            await asyncio.sleep(self.start_delay)
        pod = entry.pod
        wanted = [c for c in pod.spec.init_containers if podutil.is_sidecar(c)] + list(pod.spec.containers)
        for container in wanted:
            info = await self.runtime.run(self._spec(pod, container))
            self.runtime.set_usage(info.id, cpu_millis=CONTAINER_CPU_MILLIS, memory_bytes=CONTAINER_MEMORY_BYTES)
        entry.phase = Phase.RUNNING
        entry.task = None
        self._report(entry, await self._runs(entry))

    async def _wind_down(self, entry: _Pod) -> None:
        """The agent's steps for a pod being deleted: not Ready at once, the drain if it was
        Ready, the stops, then terminated (resent until the pod leaves the set)."""
        was_ready = podutil.status_is_ready(entry.status)
        self._report(entry, await self._runs(entry))
        if was_ready and self.termination_drain > 0:
            await asyncio.sleep(self.termination_drain)
        uid = entry.pod.metadata.uid
        for info in await self.runtime.list({base.LABEL_POD_UID: uid}):
            await self.runtime.stop(info.id, grace_seconds=0)
        while True:
            self._report(entry, await self._runs(entry), terminated=True)
            await asyncio.sleep(TERMINATED_RESEND)


# -- a process's share of the fleet -----------------------------------------------------


def hollow_status(
    name: str, address: str, cpu: str, memory: str, template: node_pb2.NodeStatus | None = None
) -> node_pb2.NodeStatus:
    """A node's status: this machine's facts (`template`, read once per process), other resources."""
    status = node_pb2.NodeStatus()
    status.CopyFrom(template or node_status(address=address, runtimes=[DEFAULT_RUNTIME]))
    del status.addresses[:]
    status.addresses.add(type="InternalIP", address=address)
    status.addresses.add(type="Hostname", address=name)
    status.capacity.update({"cpu": cpu, "memory": memory, "pods": "110"})
    status.allocatable.update({"cpu": cpu, "memory": memory, "pods": "110"})
    return status


def hollow_cpu_times(cores: int) -> CpuTimes:
    """A node 20% busy (the sampler only needs two cumulative samples)."""
    now = time.monotonic()
    return CpuTimes(busy=0.2 * now * cores, total=now * cores)


@dataclass(frozen=True)
class FleetSettings:
    prefix: str = "hollow"
    cpu: str = "32"
    memory: str = "64Gi"
    start_delay: float = 0.0
    termination_drain: float = 2.0
    # Seconds between metrics reports (the agent's default); 0: none.
    metrics_period: float = 10.0
    # Seconds over which the nodes' sessions start (0: all at once).
    ramp: float = 0.0


async def run_hollow_nodes(
    server: str, indices: Iterable[int], data_dir: Path, *, token: str, settings: FleetSettings = FleetSettings()
) -> None:
    """Run the hollow nodes of `indices` until cancelled; each joins with ``token`` for its
    node certificate unless one for this cluster is saved under ``data_dir/<name>``."""
    join_addresses = [join_address_for(s) for s in split_servers(server)]
    indices = list(indices)
    template = node_status(address="", runtimes=[DEFAULT_RUNTIME])
    cores = 2
    async with asyncio.TaskGroup() as group:
        for n, i in enumerate(indices):
            if settings.ramp > 0 and n:
                await asyncio.sleep(settings.ramp / len(indices))
            name, address = node_name(settings.prefix, i), node_address(i)
            pods = HollowPods(
                name, address, start_delay=settings.start_delay, termination_drain=settings.termination_drain
            )
            metrics = None
            if settings.metrics_period > 0:
                metrics = MetricsSampler(
                    name,
                    {DEFAULT_RUNTIME: pods.runtime},
                    pods.assigned,
                    cores=cores,
                    cpu_times=lambda: hollow_cpu_times(cores),
                    memory_used=lambda: 8 * 1024**3,
                )
            directory = data_dir / name
            directory.mkdir(parents=True, exist_ok=True)
            session = Session(
                SessionConfig(
                    server=server,
                    node_name=name,
                    labels={HOLLOW_LABEL: "true"},
                    metrics_period=max(1.0, settings.metrics_period),
                ),
                pods,
                hollow_status(name, address, settings.cpu, settings.memory, template),
                identity=NodeCredentials(name, directory, token=token, join_addresses=join_addresses),
                services=ServiceTable(),
                metrics=metrics,
            )
            group.create_task(pods.run())
            group.create_task(session.run())


def _children(args: argparse.Namespace) -> int:
    """Run each share in its own process; end them all on SIGTERM/SIGINT or when one ends."""
    base_args = [sys.executable, __file__, *sys.argv[1:]]
    procs = [subprocess.Popen([*base_args, "--share", str(i)]) for i in range(args.processes)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=30)
    return max((p.returncode or 0) for p in procs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run hollow nodes against a corral server.")
    p.add_argument("--server", required=True, help="host:port (several replicas comma-separated)")
    p.add_argument("--nodes", type=int, default=100, help="nodes in all, over every process")
    p.add_argument("--processes", type=int, default=1, help="processes to share the nodes among")
    p.add_argument("--share", type=int, default=None, help="serve only this share (0-based) of --processes")
    p.add_argument("--first", type=int, default=0, help="index of the first node (names are PREFIX-INDEX)")
    p.add_argument("--prefix", default="hollow")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="node credentials, kept across runs (default: a temp dir)"
    )
    p.add_argument("--start-delay", type=float, default=0.0, help="simulated seconds to start a pod's containers")
    p.add_argument("--termination-drain", type=float, default=2.0, help="seconds a Ready pod drains before its stop")
    p.add_argument(
        "--metrics-period", type=float, default=10.0, help="shortest seconds between metrics reports (0: none)"
    )
    p.add_argument("--ramp", type=float, default=0.0, help="seconds over which each process starts its nodes")
    p.add_argument(
        "--token", default=os.environ.get("CORRAL_TOKEN", ""), help="A node join token (default: $CORRAL_TOKEN)"
    )
    return p


def main() -> None:
    args = parser().parse_args()
    if not args.token:
        parser().error("give --token (or CORRAL_TOKEN): a node join token from `corral token create`")
    if args.processes < 1 or args.nodes < 0:
        parser().error("--processes must be 1 or more and --nodes 0 or more")
    if args.processes > 1 and args.share is None:
        sys.exit(_children(args))
    indices = share(args.nodes, args.processes, args.share or 0)
    settings = FleetSettings(
        prefix=args.prefix,
        start_delay=args.start_delay,
        termination_drain=args.termination_drain,
        metrics_period=args.metrics_period,
        ramp=args.ramp,
    )
    logs.configure("warning")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stop ends like Ctrl-C: the temp dir goes
    # On uvloop, as `corral agent` runs (agent.main.run).
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="corral-hollow-")))
        stack.enter_context(contextlib.suppress(KeyboardInterrupt))
        runner = stack.enter_context(asyncio.Runner(loop_factory=uvloop.new_event_loop))
        runner.run(
            run_hollow_nodes(
                args.server,
                [args.first + i for i in indices],
                data_dir,
                token=args.token,
                settings=settings,
            )
        )


if __name__ == "__main__":
    main()
