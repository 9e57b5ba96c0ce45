"""Validation of StatefulSets (apps/v1), as Kubernetes validates them. Pure code: no I/O.

The template is validated as the pods will be: with a persistentVolumeClaim
volume for each volumeClaimTemplate (`statefulsets.with_claim_volumes`), so a
container's volumeMount may name a claim template. `validation.py` calls these
and passes in the selector, template and name checks it owns.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.apiserver.problems import Problems
from protos import statefulsets
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2, workloads_pb2

SelectorCheck = Callable[[Problems, str, meta_pb2.LabelSelector], None]
TemplateCheck = Callable[[Problems, str, meta_pb2.LabelSelector, pod_pb2.PodTemplateSpec], None]
NameCheck = Callable[[Problems, str, str], None]
PercentCheck = Callable[[Problems, str, meta_pb2.IntOrString], int | None]
ClaimSpecCheck = Callable[[Problems, str, storage_pb2.PersistentVolumeClaimSpec], None]

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
# The spec fields an update may change (Kubernetes' list); every other one is immutable.
MUTABLE_FIELDS = (
    "replicas",
    "ordinals",
    "template",
    "update_strategy",
    "persistent_volume_claim_retention_policy",
    "min_ready_seconds",
)


def validate_stateful_set(
    p: Problems,
    sts: workloads_pb2.StatefulSet,
    *,
    selector: SelectorCheck,
    template: TemplateCheck,
    label: NameCheck,
    int_or_percent: PercentCheck,
    claim_spec: ClaimSpecCheck,
) -> None:
    """`claim_spec`: the PersistentVolumeClaim spec rules (one home: controlplane.apiserver.storage)."""
    spec = sts.spec
    p.at_least("spec.replicas", spec.replicas, 0)
    p.at_least("spec.minReadySeconds", spec.min_ready_seconds, 0)
    p.at_least("spec.revisionHistoryLimit", spec.revision_history_limit, 0)
    p.at_least("spec.ordinals.start", spec.ordinals.start, 0)
    if spec.service_name:
        label(p, "spec.serviceName", spec.service_name)
    p.one_of("spec.podManagementPolicy", spec.pod_management_policy, statefulsets.POLICIES)
    _validate_update_strategy(p, spec.update_strategy, int_or_percent)
    retention = spec.persistent_volume_claim_retention_policy
    at = "spec.persistentVolumeClaimRetentionPolicy"
    p.one_of(f"{at}.whenDeleted", retention.when_deleted, statefulsets.RETENTION_POLICIES)
    p.one_of(f"{at}.whenScaled", retention.when_scaled, statefulsets.RETENTION_POLICIES)
    selector(p, "spec.selector", spec.selector)
    _validate_claim_templates(p, spec, label, claim_spec)
    pods = workloads_pb2.StatefulSetSpec()
    pods.template.CopyFrom(spec.template)
    pods.template.spec.CopyFrom(
        statefulsets.with_claim_volumes(spec.template.spec, spec.volume_claim_templates, sts.metadata.name or "x", 0)
    )
    template(p, "spec", spec.selector, pods.template)
    if spec.template.spec.restart_policy != "Always":
        p.add(
            "spec.template.spec.restartPolicy",
            f'must be "Always" for a StatefulSet, got "{spec.template.spec.restart_policy}"',
        )


def _validate_update_strategy(
    p: Problems, strategy: workloads_pb2.StatefulSetUpdateStrategy, int_or_percent: PercentCheck
) -> None:
    p.one_of("spec.updateStrategy.type", strategy.type, statefulsets.STRATEGIES)
    if strategy.type != statefulsets.ROLLING_UPDATE:
        if strategy.HasField("rolling_update"):
            p.add("spec.updateStrategy.rollingUpdate", f'may not be set when type is "{strategy.type}"')
        return
    ru = strategy.rolling_update
    p.at_least("spec.updateStrategy.rollingUpdate.partition", ru.partition, 0)
    if ru.HasField("max_unavailable"):
        at = "spec.updateStrategy.rollingUpdate.maxUnavailable"
        value = int_or_percent(p, at, ru.max_unavailable)
        if value == 0:
            p.add(at, "must be greater than 0 (the update could never progress)")


def _validate_claim_templates(
    p: Problems, spec: workloads_pb2.StatefulSetSpec, label: NameCheck, claim_spec: ClaimSpecCheck
) -> None:
    volumes = {v.name for v in spec.template.spec.volumes}
    seen: set[str] = set()
    for i, claim in enumerate(spec.volume_claim_templates):
        at = f"spec.volumeClaimTemplates[{i}]"
        name = claim.metadata.name
        label(p, f"{at}.metadata.name", name)
        if name in seen:
            p.add(f"{at}.metadata.name", f'duplicate claim template name "{name}"')
        elif name in volumes:
            p.add(
                f"{at}.metadata.name",
                f'"{name}" is also a volume of spec.template.spec.volumes: a claim template and a '
                "volume may not share a name",
            )
        seen.add(name)
        claim_spec(p, f"{at}.spec", claim.spec)


def validate_stateful_set_update(p: Problems, old: workloads_pb2.StatefulSet, new: workloads_pb2.StatefulSet) -> None:
    """Only replicas, ordinals, template, updateStrategy, persistentVolumeClaimRetentionPolicy and
    minReadySeconds may change (Kubernetes' rule)."""
    if _frozen(old.spec) != _frozen(new.spec):
        p.add(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
            "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )


def _frozen(spec: workloads_pb2.StatefulSetSpec) -> workloads_pb2.StatefulSetSpec:
    copy = workloads_pb2.StatefulSetSpec()
    copy.CopyFrom(spec)
    for name in MUTABLE_FIELDS:
        copy.ClearField(name)  # type: ignore[arg-type]
    return copy
