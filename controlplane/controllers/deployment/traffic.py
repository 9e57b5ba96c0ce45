"""Traffic weights of BlueGreen and Canary Deployments. Pure.

The controller decides where new connections go by writing `status.traffic`:
one `{podTemplateHash, weight}` per ReplicaSet that has pods, the weights
summing to 100 (the endpoints controller copies them onto the Services, the
node proxies enforce them). `status.stablePodTemplateHash` names the version
serving production traffic. RollingUpdate and Recreate Deployments leave all
three unset: every endpoint gets an equal share.

Safety rules the strategies keep, with this module's help:

- a version gets weight only once it has the available pods for it (the one
  exception: a Deployment's very first version, when there is nothing else);
- a version loses its pods only after a status write took its weight to 0
  (`serving` reads the traffic as last written; an empty list, as a
  Deployment just switched from RollingUpdate has, means everyone serves).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.controllers.deployment.plan import Plan, SetState
from controlplane.controllers.deployment.revisions import revision_of
from protos import pods as podutil
from protos.corral.v1 import workloads_pb2
from protos.wellknown import POD_TEMPLATE_HASH


@dataclass
class Outcome:
    """What one sync of a traffic strategy decided, for the status."""

    stable: str
    # The weights that matter, stable first; other versions with pods get 0.
    weights: dict[str, int]
    canary: workloads_pb2.CanaryStatus = field(default_factory=workloads_pb2.CanaryStatus)
    # The new version is stable and fully available.
    done: bool = False
    # Why the rollout waits (a pause step, a promotion), "" if it does not.
    waiting: str = ""
    # The rollout moved on this sync (a step, a switch): that is progress.
    advanced: bool = False


def no_pods(plan: Plan, state: SetState) -> int:
    """The size a new ReplicaSet is created with: the strategy sizes it right after."""
    del plan, state
    return 0


def hash_of(state: SetState) -> str:
    return state.rs.spec.template.metadata.labels.get(POD_TEMPLATE_HASH, "")


def written_weights(status: workloads_pb2.DeploymentStatus) -> dict[str, int]:
    return {t.pod_template_hash: t.weight for t in status.traffic}


def serving(plan: Plan, state: SetState) -> bool:
    """Whether the traffic as last written may send connections to `state`."""
    weights = written_weights(plan.original.status)
    return not weights or weights.get(hash_of(state), 0) > 0


def find_stable(plan: Plan) -> SetState | None:
    """The version serving production traffic: the one recorded in the status;
    failing that (a first rollout, a Deployment that was RollingUpdate until
    now) the newest old ReplicaSet that still has pods, else the new one."""
    recorded = plan.original.status.stable_pod_template_hash
    for state in plan.sets:
        if recorded and hash_of(state) == recorded and not podutil.is_terminating(state.rs):
            return state
    running = [s for s in plan.old if (s.replicas > 0 or s.available > 0) and not podutil.is_terminating(s.rs)]
    if running:
        return max(running, key=lambda s: (revision_of(s.rs), s.available))
    return plan.new


def unchanged(plan: Plan) -> Outcome:
    """The traffic as last written (a sync that decides nothing about it)."""
    status = plan.original.status
    canary = workloads_pb2.CanaryStatus()
    canary.CopyFrom(status.canary)
    return Outcome(stable=status.stable_pod_template_hash, weights=written_weights(status), canary=canary)


def listed(plan: Plan, weights: dict[str, int]) -> list[workloads_pb2.TrafficWeight]:
    """`weights` in order, then weight 0 for every other version that has pods."""
    entries = [workloads_pb2.TrafficWeight(pod_template_hash=h, weight=w) for h, w in weights.items() if h]
    for state in plan.sets:
        h = hash_of(state)
        if h and h not in weights and (state.replicas > 0 or state.pods):
            entries.append(workloads_pb2.TrafficWeight(pod_template_hash=h, weight=0))
    return entries
