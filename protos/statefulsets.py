"""StatefulSet field values and defaults, and the identity a StatefulSet gives its pods. Pure.

A StatefulSet's pod of ordinal N is named `<set>-<N>`, labelled with its name
(`statefulset.kubernetes.io/pod-name`), its ordinal (`apps.kubernetes.io/pod-index`)
and its revision (`controller-revision-hash`: `<set>-<template hash>`), has
hostname `<set>-<N>` and subdomain `spec.serviceName`, and for each
volumeClaimTemplate a volume of that name on the claim `<template>-<set>-<N>`.
The API server validates a template with those volumes added (`with_claim_volumes`),
so a volumeMount may name a claim template.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from protos.corral.v1 import pod_pb2, storage_pb2, workloads_pb2
from protos.deployments import template_hash
from protos.revisions import revision_name

# spec.podManagementPolicy
ORDERED_READY: Final = "OrderedReady"
PARALLEL: Final = "Parallel"
POLICIES: Final = (ORDERED_READY, PARALLEL)
# spec.updateStrategy.type
ROLLING_UPDATE: Final = "RollingUpdate"
ON_DELETE: Final = "OnDelete"
STRATEGIES: Final = (ROLLING_UPDATE, ON_DELETE)
# spec.persistentVolumeClaimRetentionPolicy.whenDeleted / whenScaled
RETAIN: Final = "Retain"
DELETE: Final = "Delete"
RETENTION_POLICIES: Final = (RETAIN, DELETE)

DEFAULT_REVISION_HISTORY_LIMIT: Final = 10
DEFAULT_MAX_UNAVAILABLE: Final = 1


def pod_name(set_name: str, ordinal: int) -> str:
    return f"{set_name}-{ordinal}"


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    return f"{template}-{set_name}-{ordinal}"


def ordinal_of(set_name: str, name: str) -> int | None:
    """The ordinal in a pod name `<set>-<N>`, or None when the name is not of that form."""
    prefix = f"{set_name}-"
    digits = name[len(prefix) :] if name.startswith(prefix) else ""
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(digits)


def revision(sts: workloads_pb2.StatefulSet) -> str:
    """The revision of the set's current template: `<set>-<template hash>`."""
    return revision_name(sts.metadata.name, template_hash(sts.spec.template, sts.status.collision_count))


def with_claim_volumes(
    spec: pod_pb2.PodSpec, templates: Iterable[storage_pb2.PersistentVolumeClaim], set_name: str, ordinal: int
) -> pod_pb2.PodSpec:
    """A copy of `spec` with a persistentVolumeClaim volume for each claim template (one of the
    same name is replaced, as in Kubernetes)."""
    copy = pod_pb2.PodSpec()
    copy.CopyFrom(spec)
    for template in templates:
        name = template.metadata.name
        kept = [v for v in copy.volumes if v.name != name]
        del copy.volumes[:]
        copy.volumes.extend(kept)
        volume = copy.volumes.add(name=name)
        volume.persistent_volume_claim.claim_name = claim_name(name, set_name, ordinal)
    return copy
