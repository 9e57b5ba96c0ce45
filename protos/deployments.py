"""Deployment field values and defaults (strategy types, condition types and reasons), a
pod template as versions compare it (without its pod-template-hash label), and its hash. Pure.

`template_hash`: sha256 of the deterministically serialized template without the
`pod-template-hash` label, plus the collision count when non-zero; first 10 hex
digits. A Deployment's ReplicaSets and a StatefulSet's revisions are named by it.
"""

from __future__ import annotations

import hashlib
from typing import Final

from protos.corral.v1 import pod_pb2
from protos.wellknown import POD_TEMPLATE_HASH

# spec.strategy.type
ROLLING_UPDATE: Final = "RollingUpdate"
RECREATE: Final = "Recreate"
BLUE_GREEN: Final = "BlueGreen"
CANARY: Final = "Canary"
STRATEGIES: Final = (ROLLING_UPDATE, RECREATE, BLUE_GREEN, CANARY)
# Strategies that move traffic between versions through status.traffic.
TRAFFIC_STRATEGIES: Final = frozenset({BLUE_GREEN, CANARY})

# Condition types.
AVAILABLE: Final = "Available"
PROGRESSING: Final = "Progressing"
# Condition reasons.
MIN_AVAILABLE: Final = "MinimumReplicasAvailable"
MIN_UNAVAILABLE: Final = "MinimumReplicasUnavailable"
NEW_RS_CREATED: Final = "NewReplicaSetCreated"
FOUND_NEW_RS: Final = "FoundNewReplicaSet"
RS_UPDATED: Final = "ReplicaSetUpdated"
NEW_RS_AVAILABLE: Final = "NewReplicaSetAvailable"
TIMED_OUT: Final = "ProgressDeadlineExceeded"
PAUSED: Final = "DeploymentPaused"
RESUMED: Final = "DeploymentResumed"
ROLLOUT_PAUSED: Final = "RolloutPaused"
ROLLOUT_ABORTED: Final = "RolloutAborted"

# Defaults (the API server fills them in).
DEFAULT_MAX_SURGE: Final = "25%"
DEFAULT_MAX_UNAVAILABLE: Final = "25%"
DEFAULT_REVISION_HISTORY_LIMIT: Final = 10
DEFAULT_PROGRESS_DEADLINE_SECONDS: Final = 600
DEFAULT_SCALE_DOWN_DELAY_SECONDS: Final = 30


def without_hash(template: pod_pb2.PodTemplateSpec) -> pod_pb2.PodTemplateSpec:
    """A copy of `template` without its pod-template-hash label."""
    copy = pod_pb2.PodTemplateSpec()
    copy.CopyFrom(template)
    copy.metadata.labels.pop(POD_TEMPLATE_HASH, None)
    return copy


HASH_LENGTH: Final = 10


def template_hash(template: pod_pb2.PodTemplateSpec, collision_count: int = 0) -> str:
    digest = hashlib.sha256(without_hash(template).SerializeToString(deterministic=True))
    if collision_count > 0:
        digest.update(str(collision_count).encode())
    return digest.hexdigest()[:HASH_LENGTH]
