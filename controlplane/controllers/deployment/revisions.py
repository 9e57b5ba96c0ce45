"""Pod-template hashes and the annotations a Deployment keeps on its ReplicaSets. Pure.

A ReplicaSet belongs to one pod template: `template_hash`
(`protos.deployments`, also a StatefulSet's revision) is added as the
`pod-template-hash` label to its selector, template labels and name
(`<deployment>-<hash>`).

Annotations (Kubernetes' names):

- `deployment.kubernetes.io/revision` on each ReplicaSet and on the Deployment
  (that of its current ReplicaSet); a ReplicaSet that becomes current again
  gets max+1 and remembers its earlier numbers in
  `deployment.kubernetes.io/revision-history`;
- `deployment.kubernetes.io/desired-replicas` and `.../max-replicas`: the
  Deployment's replicas and replicas+maxSurge when the set was last scaled,
  for proportional scaling;
- `corral.io/rollback-on-failure: "true"` on a Deployment asks for an automatic
  rollback when its progress deadline is exceeded; `corral.io/rolled-back-to`
  records the hash an automatic rollback restored, so it never flip-flops;
- BlueGreen and Canary: `corral.io/promote` (a canary's pause step index, a
  blue-green preview's hash, or `full`) and `corral.io/abort` (the canary's
  hash) on a Deployment are requests from `corral rollout promote | abort`,
  removed by the controller when it acts on them; `corral.io/scale-down-at`
  (RFC 3339) on a ReplicaSet is when a version that lost its traffic is
  scaled to 0.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.deployments import without_hash
from protos.wellknown import (
    ABORT,
    DESIRED_REPLICAS,
    LAST_APPLIED,
    MAX_REPLICAS,
    PROMOTE,
    REVISION,
    REVISION_HISTORY,
    ROLLED_BACK_TO,
    SCALE_DOWN_AT,
)

# Deployment annotations that are not copied onto its ReplicaSets.
NOT_COPIED = frozenset(
    {
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        ROLLED_BACK_TO,
        PROMOTE,
        ABORT,
        SCALE_DOWN_AT,
    }
)
REVISION_HISTORY_MAX_CHARS = 2000


def equal_ignoring_hash(a: pod_pb2.PodTemplateSpec, b: pod_pb2.PodTemplateSpec) -> bool:
    return without_hash(a) == without_hash(b)


def revision_of(rs: workloads_pb2.ReplicaSet) -> int:
    """The revision annotation as a number (0 when missing or not a number)."""
    value = rs.metadata.annotations.get(REVISION, "")
    return int(value) if value.isdigit() else 0


def max_revision(sets: Iterable[workloads_pb2.ReplicaSet]) -> int:
    return max((revision_of(rs) for rs in sets), default=0)


def take(annotations: MutableMapping[str, str], name: str) -> str | None:
    """Remove an annotation; its value, or None if it was not there (a protobuf
    map's pop() would answer "" for a missing key)."""
    if name not in annotations:
        return None
    value = annotations[name]
    del annotations[name]
    return value


def int_annotation(rs: workloads_pb2.ReplicaSet, name: str) -> int | None:
    value = rs.metadata.annotations.get(name, "")
    return int(value) if value.isdigit() else None


def set_replicas_annotations(rs: workloads_pb2.ReplicaSet, desired: int, max_replicas: int) -> bool:
    """Record the Deployment's size on `rs`; whether anything changed."""
    wanted = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(max_replicas)}
    annotations = rs.metadata.annotations
    changed = any(annotations.get(k) != v for k, v in wanted.items())
    annotations.update(wanted)
    return changed


def copy_deployment_annotations(d: workloads_pb2.Deployment, rs: workloads_pb2.ReplicaSet) -> bool:
    changed = False
    for key, value in d.metadata.annotations.items():
        if key in NOT_COPIED or rs.metadata.annotations.get(key) == value:
            continue
        rs.metadata.annotations[key] = value
        changed = True
    return changed


def set_new_rs_annotations(
    d: workloads_pb2.Deployment,
    rs: workloads_pb2.ReplicaSet,
    revision: int,
    *,
    max_surge: int,
    exists: bool,
) -> bool:
    """Kubernetes' SetNewReplicaSetAnnotations: copy annotations, raise the revision."""
    changed = copy_deployment_annotations(d, rs)
    annotations = rs.metadata.annotations
    old = annotations.get(REVISION)
    if old is not None and not old.isdigit():
        return changed
    if int(old or 0) < revision:
        annotations[REVISION] = str(revision)
        changed = True
        if old is not None:
            _append_history(rs, old)
    if not exists:
        replicas = d.spec.replicas
        changed = set_replicas_annotations(rs, replicas, replicas + max_surge) or changed
    return changed


def _append_history(rs: workloads_pb2.ReplicaSet, old_revision: str) -> None:
    annotations = rs.metadata.annotations
    history = [r for r in annotations.get(REVISION_HISTORY, "").split(",") if r]
    history.append(old_revision)
    while history and len(",".join(history)) > REVISION_HISTORY_MAX_CHARS:
        history.pop(0)
    annotations[REVISION_HISTORY] = ",".join(history)
