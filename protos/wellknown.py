"""Well-known names: annotations, labels, taints and runtimes that several rooms read or write.

Names only (no behaviour), each defined once here.
"""

from __future__ import annotations

from typing import Final

DEFAULT_NAMESPACE: Final = "default"
# The finalizer a Namespace carries until the namespace controller has deleted its contents.
NAMESPACE_FINALIZER: Final = "kubernetes"

# -- annotations ---------------------------------------------------------------
# Deployments and ReplicaSets (Kubernetes' names).
REVISION: Final = "deployment.kubernetes.io/revision"
REVISION_HISTORY: Final = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS: Final = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS: Final = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
CHANGE_CAUSE: Final = "kubernetes.io/change-cause"
DEPRECATED_ROLLBACK_TO: Final = "deprecated.deployment.rollback.to"
# Deployments and ReplicaSets (corral's).
ROLLBACK_ON_FAILURE: Final = "corral.io/rollback-on-failure"
ROLLED_BACK_TO: Final = "corral.io/rolled-back-to"
PROMOTE: Final = "corral.io/promote"
# The value of PROMOTE that skips the remaining canary steps.
PROMOTE_FULL: Final = "full"
ABORT: Final = "corral.io/abort"
SCALE_DOWN_AT: Final = "corral.io/scale-down-at"
RESTARTED_AT: Final = "corral.io/restartedAt"
# Pods.
CONFIG_ERRORS: Final = "corral.io/container-config-errors"
# On a node's copy of a pod only: each container's variables from envFrom (JSON: container → {name: value}).
ENV_FROM: Final = "corral.io/env-from"
SCHEDULING_STRATEGY: Final = "corral.io/scheduling-strategy"
# What a LimitRange filled into a pod at its creation (as Kubernetes' LimitRanger notes it).
LIMIT_RANGER: Final = "kubernetes.io/limit-ranger"
# Annotation prefixes that only the system writes.
SYSTEM_ANNOTATION_PREFIXES: Final = (
    "corral.io/",
    "deployment.kubernetes.io/",
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
    LIMIT_RANGER,
)

# -- labels --------------------------------------------------------------------
POD_TEMPLATE_HASH: Final = "pod-template-hash"
SERVICE_NAME: Final = "kubernetes.io/service-name"
ENDPOINTSLICE_MANAGED_BY: Final = "endpointslice.kubernetes.io/managed-by"
HOSTNAME: Final = "kubernetes.io/hostname"
# The node's failure zone: the node lifecycle controller's eviction rates are per zone.
ZONE: Final = "topology.kubernetes.io/zone"
# A StatefulSet's pods (Kubernetes' names): the pod's name, its ordinal, its revision.
STATEFULSET_POD_NAME: Final = "statefulset.kubernetes.io/pod-name"
POD_INDEX: Final = "apps.kubernetes.io/pod-index"
CONTROLLER_REVISION_HASH: Final = "controller-revision-hash"
NODE_ROLE_PREFIX: Final = "node-role.kubernetes.io/"

# -- taints --------------------------------------------------------------------
TAINT_UNREACHABLE: Final = "node.kubernetes.io/unreachable"
TAINT_NOT_READY: Final = "node.kubernetes.io/not-ready"
TAINT_UNSCHEDULABLE: Final = "node.kubernetes.io/unschedulable"
TAINT_DISK_PRESSURE: Final = "node.kubernetes.io/disk-pressure"
TAINT_MEMORY_PRESSURE: Final = "node.kubernetes.io/memory-pressure"
TAINT_PID_PRESSURE: Final = "node.kubernetes.io/pid-pressure"
TAINT_NETWORK_UNAVAILABLE: Final = "node.kubernetes.io/network-unavailable"

# -- node fields (a node selector term's matchFields) ---------------------------
NODE_NAME_FIELD: Final = "metadata.name"

# -- runtimes ------------------------------------------------------------------
DEFAULT_RUNTIME: Final = "docker"
RUNTIMES: Final = ("docker", "process")
