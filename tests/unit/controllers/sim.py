"""A tiny in-memory cluster that drives the pure workload reconcilers.

`Sim` holds one Deployment, its ReplicaSets and pods, and a clock. Its
controller steps call `deployment.reconcile.reconcile` and
`replicaset.reconcile.reconcile` and apply their actions the way the API
would (uids, resourceVersions, generation bumps on spec changes, status kept
on spec updates, pods created Pending and unassigned). A "kubelet" part marks
pods ready, not ready or failed. Nothing here does I/O or sleeps.

Bounds (`Sim.bounds_report`) are measured on pods that exist: every
non-terminal pod counts towards the total; a pod is available when Ready for
minReadySeconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.deployment import strategy
from controlplane.controllers.deployment.plan import Event
from controlplane.controllers.deployment.reconcile import DeploymentActions
from controlplane.controllers.deployment.reconcile import reconcile as reconcile_deployment
from controlplane.controllers.replicaset.reconcile import ReplicaSetActions
from controlplane.controllers.replicaset.reconcile import reconcile as reconcile_replica_set
from protos import deployments, owners
from protos import pods as podutil
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_deployment(
    name: str = "web",
    *,
    replicas: int = 3,
    image: str = "httpd:1",
    max_surge: int | str | None = None,
    max_unavailable: int | str | None = None,
    recreate: bool = False,
    min_ready_seconds: int = 0,
    progress_deadline_seconds: int | None = None,
    revision_history_limit: int | None = None,
    annotations: dict[str, str] | None = None,
) -> workloads_pb2.Deployment:
    """A defaulted Deployment as the API server would store it (no uid yet)."""
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = name, "default"
    d.metadata.annotations.update(annotations or {})
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image=image)
    d.spec.min_ready_seconds = min_ready_seconds
    if recreate:
        d.spec.strategy.type = deployments.RECREATE
    _set_int_or_percent(d.spec.strategy.rolling_update.max_surge, max_surge)
    _set_int_or_percent(d.spec.strategy.rolling_update.max_unavailable, max_unavailable)
    if progress_deadline_seconds is not None:
        d.spec.progress_deadline_seconds = progress_deadline_seconds
    if revision_history_limit is not None:
        d.spec.revision_history_limit = revision_history_limit
    apply_defaults(by_kind("Deployment"), d)
    return d


def _set_int_or_percent(field: meta_pb2.IntOrString, value: int | str | None) -> None:
    if isinstance(value, int):
        field.int_val = value
    elif isinstance(value, str):
        field.str_val = value


@dataclass(frozen=True)
class Bounds:
    total: int
    available: int
    ready: int
    max_total: int
    min_available: int


@dataclass
class Sim:
    deployment: workloads_pb2.Deployment
    now: datetime = START
    replica_sets: dict[str, workloads_pb2.ReplicaSet] = field(default_factory=dict)
    pods: dict[str, pod_pb2.Pod] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    seq: int = 0

    def __post_init__(self) -> None:
        self._stamp(self.deployment)

    # -- identity -------------------------------------------------------------------

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _stamp(self, obj: pod_pb2.Pod | workloads_pb2.ReplicaSet | workloads_pb2.Deployment) -> None:
        n = self._next()
        obj.metadata.uid = f"uid-{n}"
        obj.metadata.resource_version = str(n)
        obj.metadata.generation = 1
        obj.metadata.creation_timestamp.FromDatetime(self.now + timedelta(microseconds=n))

    def _bump(self, obj: workloads_pb2.ReplicaSet | workloads_pb2.Deployment, *, spec_changed: bool) -> None:
        obj.metadata.resource_version = str(self._next())
        if spec_changed:
            obj.metadata.generation += 1

    # -- the user ---------------------------------------------------------------

    def set_image(self, image: str) -> None:
        self.deployment.spec.template.spec.containers[0].image = image
        self._bump(self.deployment, spec_changed=True)

    def set_template(self, template: pod_pb2.PodTemplateSpec) -> None:
        self.deployment.spec.template.CopyFrom(template)
        self._bump(self.deployment, spec_changed=True)

    def scale(self, replicas: int) -> None:
        self.deployment.spec.replicas = replicas
        self._bump(self.deployment, spec_changed=True)

    def pause(self, paused: bool = True) -> None:
        self.deployment.spec.paused = paused
        self._bump(self.deployment, spec_changed=True)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # -- the kubelet ------------------------------------------------------------

    def mark_ready(self, names: Iterable[str] | None = None) -> list[str]:
        """Make pods Running and Ready (default: every pod not yet ready); their names."""
        chosen = (
            list(names)
            if names is not None
            else [n for n, p in self.pods.items() if not podutil.is_ready(p) and not podutil.is_terminal(p)]
        )
        for name in chosen:
            pod = self.pods[name]
            pod.spec.node_name = pod.spec.node_name or f"node-{self._next() % 3}"
            pod.status.phase = "Running"
            self._set_ready(pod, True)
        return chosen

    def mark_not_ready(self, name: str) -> None:
        self._set_ready(self.pods[name], False)

    def mark_failed(self, name: str) -> None:
        pod = self.pods[name]
        pod.status.phase = "Failed"
        self._set_ready(pod, False)

    def _set_ready(self, pod: pod_pb2.Pod, ready: bool) -> None:
        value = "True" if ready else "False"
        for condition in pod.status.conditions:
            if condition.type == "Ready":
                if condition.status != value:
                    condition.status = value
                    condition.last_transition_time.FromDatetime(self.now)
                return
        condition = pod.status.conditions.add(type="Ready", status=value)
        condition.last_transition_time.FromDatetime(self.now)

    # -- the controllers --------------------------------------------------------

    def sync_deployment(self) -> DeploymentActions:
        actions = reconcile_deployment(
            self.deployment, list(self.replica_sets.values()), list(self.pods.values()), now=self.now
        )
        self._apply_deployment_actions(actions)
        return actions

    def _apply_deployment_actions(self, actions: DeploymentActions) -> None:
        for rs in actions.delete:
            del self.replica_sets[rs.metadata.name]
        for rs in (*actions.scale_down, *actions.update):
            self._update_replica_set(rs)
        for rs in actions.create:
            created = workloads_pb2.ReplicaSet()
            created.CopyFrom(rs)
            self._stamp(created)
            self.replica_sets[created.metadata.name] = created
        if actions.deployment is not None:
            self.deployment.metadata.annotations.clear()
            self.deployment.metadata.annotations.update(actions.deployment.metadata.annotations)
            self.deployment.status.CopyFrom(actions.deployment.status)
            self._bump(self.deployment, spec_changed=False)
        if actions.rollback is not None:
            self.set_template(actions.rollback)
        self.events.extend(actions.events)

    def _update_replica_set(self, rs: workloads_pb2.ReplicaSet) -> None:
        stored = self.replica_sets[rs.metadata.name]
        assert stored.metadata.resource_version == rs.metadata.resource_version, "stale write"
        spec_changed = stored.spec != rs.spec
        status = workloads_pb2.ReplicaSetStatus()
        status.CopyFrom(stored.status)
        stored.CopyFrom(rs)
        stored.status.CopyFrom(status)
        self._bump(stored, spec_changed=spec_changed)

    def sync_replica_set(self, name: str) -> ReplicaSetActions:
        rs = self.replica_sets[name]
        actions = reconcile_replica_set(rs, list(self.pods.values()), now=self.now)
        for pod in actions.delete:
            del self.pods[pod.metadata.name]
        for pod in (*actions.adopt, *actions.release):
            self.pods[pod.metadata.name] = pod
        for template in actions.create:
            pod = pod_pb2.Pod()
            pod.CopyFrom(template)
            self._stamp(pod)
            pod.metadata.name = f"{template.metadata.generate_name}{self.seq:05d}"
            pod.status.phase = "Pending"
            self.pods[pod.metadata.name] = pod
        if actions.status is not None:
            rs.status.CopyFrom(actions.status)
            self._bump(rs, spec_changed=False)
        return actions

    def sync_replica_sets(self) -> None:
        for name in sorted(self.replica_sets):
            self.sync_replica_set(name)

    def round(self) -> DeploymentActions:
        actions = self.sync_deployment()
        self.sync_replica_sets()
        return actions

    def settle(self, *, ready: bool = True, max_rounds: int = 50) -> int:
        """Rounds (marking new pods ready) until nothing changes; the count."""
        for n in range(max_rounds):
            before = self.fingerprint()
            self.round()
            if ready:
                self.mark_ready()
            if self.fingerprint() == before:
                return n
        raise AssertionError(f"no steady state after {max_rounds} rounds")

    def fingerprint(self) -> tuple[object, ...]:
        return (
            self.deployment.SerializeToString(deterministic=True),
            tuple(sorted((n, rs.SerializeToString(deterministic=True)) for n, rs in self.replica_sets.items())),
            tuple(sorted((n, p.SerializeToString(deterministic=True)) for n, p in self.pods.items())),
        )

    # -- observations -----------------------------------------------------------

    def running_pods(self) -> list[pod_pb2.Pod]:
        return [p for p in self.pods.values() if not podutil.is_terminal(p)]

    def pods_of(self, rs_name: str) -> list[pod_pb2.Pod]:
        uid = self.replica_sets[rs_name].metadata.uid
        return [p for p in self.running_pods() if owners.is_controlled_by(p, uid)]

    def rs_with_image(self, image: str) -> workloads_pb2.ReplicaSet:
        found = [rs for rs in self.replica_sets.values() if rs.spec.template.spec.containers[0].image == image]
        assert len(found) == 1, f"{len(found)} ReplicaSets run {image}"
        return found[0]

    def sizes(self) -> dict[str, int]:
        return {n: rs.spec.replicas for n, rs in sorted(self.replica_sets.items())}

    def bounds(self) -> Bounds:
        d = self.deployment
        running = self.running_pods()
        min_ready = d.spec.min_ready_seconds
        return Bounds(
            total=len(running),
            available=sum(podutil.is_available(p, min_ready, self.now) for p in running),
            ready=sum(podutil.is_ready(p) for p in running),
            max_total=d.spec.replicas + strategy.max_surge(d),
            min_available=d.spec.replicas - strategy.max_unavailable(d),
        )

    def committed(self) -> tuple[int, int]:
        """(Σ max(spec, pods), Σ min(available, spec)) over ReplicaSets: the most
        pods there may be and the fewest available once every ReplicaSet has
        caught up with its spec."""
        size = available = 0
        min_ready = self.deployment.spec.min_ready_seconds
        for name, rs in self.replica_sets.items():
            pods = self.pods_of(name)
            size += max(rs.spec.replicas, len(pods))
            available += min(rs.spec.replicas, sum(podutil.is_available(p, min_ready, self.now) for p in pods))
        return size, available

    def complete(self) -> bool:
        d = self.deployment
        new = [
            rs
            for rs in self.replica_sets.values()
            if rs.spec.template.spec.containers[0].image == d.spec.template.spec.containers[0].image
        ]
        others = [rs for rs in self.replica_sets.values() if rs not in new]
        bounds = self.bounds()
        return (
            len(new) == 1
            and new[0].spec.replicas == d.spec.replicas
            and len(self.pods_of(new[0].metadata.name)) == d.spec.replicas
            and bounds.available == bounds.total == d.spec.replicas
            and all(rs.spec.replicas == 0 and not self.pods_of(rs.metadata.name) for rs in others)
        )
