"""BlueGreen and Canary Deployments on the `sim` model: builders, the user's
requests (promote, abort, undo) and kubelet faults (crash loops), and
readings of the traffic a Deployment's status holds."""

from __future__ import annotations

from typing import Any

from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.deployment.revisions import revision_of
from protos import codec
from protos.corral.v1 import workloads_pb2
from protos.deployments import without_hash
from protos.kinds import by_kind
from protos.wellknown import ABORT, POD_TEMPLATE_HASH, PROMOTE
from tests.unit.controllers.sim import Sim, make_deployment

STEPS = [{"setWeight": 10}, {"pause": {"duration": 60}}, {"setWeight": 50}, {"pause": {}}]


def traffic_deployment(
    strategy: dict[str, Any],
    *,
    replicas: int = 3,
    min_ready_seconds: int = 0,
    progress_deadline_seconds: int | None = None,
) -> workloads_pb2.Deployment:
    """A defaulted Deployment with `strategy` (YAML shape, e.g. {"type": "Canary", "canary": {...}})."""
    d = make_deployment(
        replicas=replicas, min_ready_seconds=min_ready_seconds, progress_deadline_seconds=progress_deadline_seconds
    )
    parsed, errors = codec.from_dict(strategy, workloads_pb2.DeploymentStrategy)
    assert not errors, errors
    d.spec.strategy.CopyFrom(parsed)
    apply_defaults(by_kind("Deployment"), d)
    return d


def canary(steps: list[dict[str, Any]] | None = None, **settings: Any) -> dict[str, Any]:
    return {"type": "Canary", "canary": {"steps": STEPS if steps is None else steps, **settings}}


def blue_green(**settings: Any) -> dict[str, Any]:
    return {"type": "BlueGreen", "blueGreen": settings}


def settled(strategy: dict[str, Any], **kwargs: Any) -> Sim:
    """A Sim whose first version (httpd:1) runs, all pods ready."""
    sim = Sim(traffic_deployment(strategy, **kwargs))
    sim.settle()
    return sim


def weights(sim: Sim) -> dict[str, int]:
    """Traffic by image: {"httpd:1": 90, "httpd:2": 10}."""
    by_hash = {
        rs.spec.template.metadata.labels[POD_TEMPLATE_HASH]: rs.spec.template.spec.containers[0].image
        for rs in sim.replica_sets.values()
    }
    return {by_hash[t.pod_template_hash]: t.weight for t in sim.deployment.status.traffic}


def hash_of_image(sim: Sim, image: str) -> str:
    return sim.rs_with_image(image).spec.template.metadata.labels[POD_TEMPLATE_HASH]


def stable_image(sim: Sim) -> str:
    stable = sim.deployment.status.stable_pod_template_hash
    return next(
        rs.spec.template.spec.containers[0].image
        for rs in sim.replica_sets.values()
        if rs.spec.template.metadata.labels[POD_TEMPLATE_HASH] == stable
    )


def sizes_by_image(sim: Sim) -> dict[str, int]:
    return {rs.spec.template.spec.containers[0].image: rs.spec.replicas for rs in sim.replica_sets.values()}


def request(sim: Sim, name: str, value: str) -> None:
    """What `corral rollout promote | abort` write: an annotation on the Deployment."""
    sim.deployment.metadata.annotations[name] = value
    sim.deployment.metadata.resource_version = str(int(sim.deployment.metadata.resource_version) + 1000)


def promote(sim: Sim, value: str) -> None:
    request(sim, PROMOTE, value)


def abort(sim: Sim) -> None:
    request(sim, ABORT, sim.deployment.status.canary.pod_template_hash)


def undo(sim: Sim) -> None:
    """`corral rollout undo`: the template of the revision before the current one."""
    current = int(sim.deployment.metadata.annotations.get("deployment.kubernetes.io/revision", "0"))
    older = [rs for rs in sim.replica_sets.values() if 0 < revision_of(rs) < current]
    if older:
        sim.set_template(without_hash(max(older, key=revision_of).spec.template))


def crash(sim: Sim, name: str) -> None:
    """The pod's container crash-loops: waiting in CrashLoopBackOff, not ready."""
    pod = sim.pods[name]
    del pod.status.container_statuses[:]
    status = pod.status.container_statuses.add(name="main", restart_count=4)
    status.state.waiting.reason = "CrashLoopBackOff"
    pod.status.phase = "Running"
    sim.mark_not_ready(name)


def pods_of_image(sim: Sim, image: str) -> list[str]:
    return sorted(p.metadata.name for p in sim.running_pods() if p.spec.containers[0].image == image)
