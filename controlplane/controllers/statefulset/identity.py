"""A StatefulSet's pods and claims as objects, pure: what pod N and its claims look like.

- `new_pod`: `<set>-<N>` from a template, with the identity labels, hostname
  `<set>-<N>`, subdomain `spec.serviceName`, a persistentVolumeClaim volume per
  claim template, and the set as controller owner;
- `new_claim`: `<template>-<set>-<N>` from a claim template, labelled with the
  template's labels and the selector's matchLabels (as Kubernetes does);
- `claim_owners`: the ownerReferences a claim should carry under the
  persistentVolumeClaimRetentionPolicy (Kubernetes' rule): the set when
  whenDeleted is Delete (unless the pod was scaled down and whenScaled is
  Delete), the pod when whenScaled is Delete and its ordinal is out of range;
- `template_of`: the template a pod was made from, rebuilt from the pod, when
  its hash is the revision's (so a pod below the partition is re-created at the
  current revision without storing old templates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.message import Message

from protos import owners, statefulsets
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2, workloads_pb2
from protos.deployments import template_hash
from protos.kinds import info_of, meta
from protos.wellknown import CONTROLLER_REVISION_HASH, POD_INDEX, STATEFULSET_POD_NAME

IDENTITY_LABELS = (STATEFULSET_POD_NAME, POD_INDEX, CONTROLLER_REVISION_HASH)


def revision_of(pod: pod_pb2.Pod) -> str:
    return pod.metadata.labels.get(CONTROLLER_REVISION_HASH, "")


def new_pod(
    sts: workloads_pb2.StatefulSet, ordinal: int, template: pod_pb2.PodTemplateSpec, revision: str
) -> pod_pb2.Pod:
    name = statefulsets.pod_name(sts.metadata.name, ordinal)
    pod = pod_pb2.Pod(api_version="v1", kind="Pod")
    m = pod.metadata
    m.name, m.namespace = name, sts.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.labels.update({STATEFULSET_POD_NAME: name, POD_INDEX: str(ordinal), CONTROLLER_REVISION_HASH: revision})
    m.annotations.update(template.metadata.annotations)
    m.owner_references.append(owners.owner_reference(sts))
    pod.spec.CopyFrom(
        statefulsets.with_claim_volumes(template.spec, sts.spec.volume_claim_templates, sts.metadata.name, ordinal)
    )
    pod.spec.hostname = name
    pod.spec.subdomain = sts.spec.service_name
    return pod


def template_of(sts: workloads_pb2.StatefulSet, pod: pod_pb2.Pod, revision: str) -> pod_pb2.PodTemplateSpec | None:
    """The template `pod` was made from, if it can be rebuilt exactly (its hash is `revision`'s)."""
    template = pod_pb2.PodTemplateSpec()
    template.metadata.labels.update({k: v for k, v in pod.metadata.labels.items() if k not in IDENTITY_LABELS})
    template.metadata.annotations.update(pod.metadata.annotations)
    template.spec.CopyFrom(pod.spec)
    template.spec.ClearField("hostname")
    template.spec.ClearField("subdomain")
    template.spec.ClearField("node_name")
    claims = {t.metadata.name for t in sts.spec.volume_claim_templates}
    kept = [v for v in template.spec.volumes if v.name not in claims]
    del template.spec.volumes[:]
    template.spec.volumes.extend(kept)
    made = f"{sts.metadata.name}-{template_hash(template, sts.status.collision_count)}"
    return template if made == revision else None


def new_claim(
    sts: workloads_pb2.StatefulSet, template: storage_pb2.PersistentVolumeClaim, ordinal: int
) -> storage_pb2.PersistentVolumeClaim:
    claim = storage_pb2.PersistentVolumeClaim(api_version="v1", kind="PersistentVolumeClaim")
    m = claim.metadata
    m.name = statefulsets.claim_name(template.metadata.name, sts.metadata.name, ordinal)
    m.namespace = sts.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.labels.update(sts.spec.selector.match_labels)
    m.annotations.update(template.metadata.annotations)
    claim.spec.CopyFrom(template.spec)
    return claim


def _reference(owner: Message) -> meta_pb2.OwnerReference:
    """A plain (not controller) ownerReference: the garbage collector deletes the claim once it is gone."""
    info, m = info_of(owner), meta(owner)
    return meta_pb2.OwnerReference(api_version=info.api_version, kind=info.kind, name=m.name, uid=m.uid)


def claim_owners(
    claim: storage_pb2.PersistentVolumeClaim, sts: workloads_pb2.StatefulSet, pod: pod_pb2.Pod | None, *, scaled: bool
) -> storage_pb2.PersistentVolumeClaim | None:
    """A copy of `claim` with the ownerReferences the retention policy asks for, or None when
    it has them already. `scaled`: the claim's ordinal is out of the set's range."""
    policy = sts.spec.persistent_volume_claim_retention_policy
    by_pod = policy.when_scaled == statefulsets.DELETE and scaled and pod is not None
    by_set = policy.when_deleted == statefulsets.DELETE and not (scaled and policy.when_scaled == statefulsets.DELETE)
    ours = {sts.metadata.uid} | ({pod.metadata.uid} if pod is not None else set())
    kept = [r for r in claim.metadata.owner_references if r.uid not in ours]
    wanted = [*kept, *([_reference(sts)] if by_set else []), *([_reference(pod)] if by_pod and pod else [])]
    if list(claim.metadata.owner_references) == wanted:
        return None
    copy = storage_pb2.PersistentVolumeClaim()
    copy.CopyFrom(claim)
    del copy.metadata.owner_references[:]
    copy.metadata.owner_references.extend(wanted)
    return copy


def claims_of(
    sts: workloads_pb2.StatefulSet, ordinal: int, claims: Mapping[str, storage_pb2.PersistentVolumeClaim]
) -> Iterable[tuple[storage_pb2.PersistentVolumeClaim, storage_pb2.PersistentVolumeClaim | None]]:
    """Each claim template with the existing claim of that ordinal (None: not made yet)."""
    for template in sts.spec.volume_claim_templates:
        name = statefulsets.claim_name(template.metadata.name, sts.metadata.name, ordinal)
        yield template, claims.get(name)
