"""Validation of DaemonSets (apps/v1), as Kubernetes validates them. Pure code: no I/O.

`validation.py` calls these and passes in the selector, template and
int-or-percent checks it owns.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.apiserver.problems import Problems
from protos import daemonsets
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2

SelectorCheck = Callable[[Problems, str, meta_pb2.LabelSelector], None]
TemplateCheck = Callable[[Problems, str, meta_pb2.LabelSelector, pod_pb2.PodTemplateSpec], None]
PercentCheck = Callable[[Problems, str, meta_pb2.IntOrString], int | None]

_ROLLING = "spec.updateStrategy.rollingUpdate"


def validate_daemon_set(
    p: Problems,
    ds: workloads_pb2.DaemonSet,
    *,
    selector: SelectorCheck,
    template: TemplateCheck,
    int_or_percent: PercentCheck,
) -> None:
    spec = ds.spec
    p.at_least("spec.minReadySeconds", spec.min_ready_seconds, 0)
    p.at_least("spec.revisionHistoryLimit", spec.revision_history_limit, 0)
    selector(p, "spec.selector", spec.selector)
    template(p, "spec", spec.selector, spec.template)
    if spec.template.spec.restart_policy != "Always":
        p.add(
            "spec.template.spec.restartPolicy",
            f'must be "Always" for a DaemonSet, got "{spec.template.spec.restart_policy}"',
        )
    if spec.template.spec.node_name:
        p.add(
            "spec.template.spec.nodeName",
            "may not be set: the DaemonSet places one pod on every node (use nodeSelector or node affinity)",
        )
    _validate_update_strategy(p, spec.update_strategy, int_or_percent)


def _validate_update_strategy(
    p: Problems, strategy: workloads_pb2.DaemonSetUpdateStrategy, int_or_percent: PercentCheck
) -> None:
    p.one_of("spec.updateStrategy.type", strategy.type, daemonsets.STRATEGIES)
    if strategy.type != daemonsets.ROLLING_UPDATE:
        if strategy.HasField("rolling_update"):
            p.add(_ROLLING, f'may not be set when type is "{strategy.type}"')
        return
    ru = strategy.rolling_update
    unavailable = int_or_percent(p, f"{_ROLLING}.maxUnavailable", ru.max_unavailable)
    surge = int_or_percent(p, f"{_ROLLING}.maxSurge", ru.max_surge)
    if unavailable == 0 and surge == 0:
        p.add(
            f"{_ROLLING}.maxUnavailable",
            "may not be 0 when maxSurge is 0 (the update could never progress)",
        )


def validate_daemon_set_update(p: Problems, old: workloads_pb2.DaemonSet, new: workloads_pb2.DaemonSet) -> None:
    if old.spec.selector != new.spec.selector:
        p.add("spec.selector", "field is immutable")
