"""The new ReplicaSet (the one whose template is the Deployment's), its revision,
and the revision history. Pure; steps on a `Plan`.

- `find_new`: the oldest ReplicaSet whose template equals the Deployment's,
  ignoring the pod-template-hash label (a rollback to an old template finds
  the old ReplicaSet again);
- `sync_revision`: the new ReplicaSet's revision becomes max(old)+1 if lower
  (so a reused one moves to the top, its old numbers kept in
  revision-history), the Deployment's revision annotation follows it, and a
  change of revision (a rollout starting) restarts the Progressing condition;
  with `create`, a missing new ReplicaSet is built (`<name>-<hash>`), or the
  collision count goes up when that name is taken by another template;
- `cleanup`: old ReplicaSets beyond revisionHistoryLimit that are scaled to 0
  and have no pods are deleted, lowest revision first.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.controllers.deployment import conditions as cond
from controlplane.controllers.deployment import strategy
from controlplane.controllers.deployment.plan import Plan, SetState, creation_key
from controlplane.controllers.deployment.revisions import (
    equal_ignoring_hash,
    max_revision,
    revision_of,
    set_new_rs_annotations,
)
from protos import deployments, owners
from protos import pods as podutil
from protos.corral.v1 import workloads_pb2
from protos.deployments import template_hash
from protos.wellknown import POD_TEMPLATE_HASH, REVISION

# How a ReplicaSet to be created gets its initial size: (plan, its state) -> replicas.
Sizer = Callable[[Plan, SetState], int]


def find_new(plan: Plan) -> SetState | None:
    template = plan.deployment.spec.template
    matching = [s for s in plan.sets if equal_ignoring_hash(s.rs.spec.template, template)]
    return min(matching, key=lambda s: creation_key(s.rs)) if matching else None


def sync_revision(plan: Plan, *, create: bool, sizer: Sizer | None = None) -> None:
    if plan.new is None:
        plan.new = find_new(plan)
    revision = max_revision(s.rs for s in plan.old) + 1
    if plan.new is not None:
        _sync_existing(plan, plan.new, revision)
    elif create:
        _create(plan, revision, sizer)


def _sync_existing(plan: Plan, new: SetState, revision: int) -> None:
    d = plan.deployment
    set_new_rs_annotations(d, new.rs, revision, max_surge=strategy.max_surge(d), exists=True)
    new.rs.spec.min_ready_seconds = d.spec.min_ready_seconds
    current = new.rs.metadata.annotations.get(REVISION, "")
    changed = d.metadata.annotations.get(REVISION) != current
    d.metadata.annotations[REVISION] = current
    if not cond.has_progress_deadline(d):
        return
    started = changed and not d.spec.paused
    if started or cond.get_condition(d.status, deployments.PROGRESSING) is None:
        _start_progressing(plan, deployments.FOUND_NEW_RS, f'Found new replica set "{new.name}"')


def _start_progressing(plan: Plan, reason: str, message: str) -> None:
    condition = cond.new_condition(deployments.PROGRESSING, "True", reason, message, plan.now)
    cond.replace_condition(plan.deployment.status, condition)


def _create(plan: Plan, revision: int, sizer: Sizer | None) -> None:
    d = plan.deployment
    pod_hash = template_hash(d.spec.template, d.status.collision_count)
    name = f"{d.metadata.name}-{pod_hash}"
    if name in plan.names:
        plan.collision = True
        d.status.collision_count += 1
        return
    rs = build_replica_set(d, pod_hash, name)
    set_new_rs_annotations(d, rs, revision, max_surge=strategy.max_surge(d), exists=False)
    state = SetState(rs=rs, original=None, pods=[])
    plan.sets.append(state)
    plan.new = state
    replicas = sizer(plan, state) if sizer is not None else d.spec.replicas
    rs.spec.replicas = replicas
    if replicas > 0:
        plan.event("ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {replicas}", replica_set=name)
    d.metadata.annotations[REVISION] = str(revision)
    if cond.has_progress_deadline(d):
        _start_progressing(plan, deployments.NEW_RS_CREATED, f'Created new replica set "{name}"')


def build_replica_set(d: workloads_pb2.Deployment, pod_hash: str, name: str) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name = name
    rs.metadata.namespace = d.metadata.namespace
    rs.metadata.owner_references.append(owners.owner_reference(d))
    rs.spec.replicas = 0
    rs.spec.min_ready_seconds = d.spec.min_ready_seconds
    rs.spec.selector.CopyFrom(d.spec.selector)
    rs.spec.selector.match_labels[POD_TEMPLATE_HASH] = pod_hash
    rs.spec.template.CopyFrom(d.spec.template)
    rs.spec.template.metadata.labels[POD_TEMPLATE_HASH] = pod_hash
    rs.metadata.labels.update(rs.spec.template.metadata.labels)
    return rs


def cleanup(plan: Plan) -> None:
    """Delete the oldest unused ReplicaSets beyond revisionHistoryLimit."""
    d = plan.deployment
    if not d.spec.HasField("revision_history_limit"):
        return
    cleanable = [s for s in plan.old if s.original is not None and not podutil.is_terminating(s.rs)]
    surplus = len(cleanable) - d.spec.revision_history_limit
    if surplus <= 0:
        return
    cleanable.sort(key=lambda s: (revision_of(s.rs), creation_key(s.rs)))
    for state in cleanable[:surplus]:
        rs = state.rs
        if (
            rs.status.replicas
            or rs.spec.replicas
            or state.pods
            or rs.metadata.generation > rs.status.observed_generation
        ):
            continue
        plan.deleted.append(rs)
