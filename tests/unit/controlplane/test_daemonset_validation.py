"""DaemonSets in the API: Kubernetes' defaults, validation with field paths, the immutable
selector, and pods' node affinity matchFields."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate, validate_update
from protos import codec
from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.kinds import by_kind, resolve

DS = by_kind("DaemonSet")
POD = by_kind("Pod")


def ds_doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "exporter"}},
        "template": {
            "metadata": {"labels": {"app": "exporter"}},
            "spec": {"containers": [{"name": "exporter", "image": "busybox:1"}]},
        },
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "exporter"}, "spec": base}


def defaulted(doc: dict[str, Any]) -> workloads_pb2.DaemonSet:
    ds, errors = codec.from_dict(doc, workloads_pb2.DaemonSet)
    assert errors == []
    apply_defaults(DS, ds)
    return ds


def causes(doc: dict[str, Any]) -> list[str]:
    return [str(c) for c in validate(DS, defaulted(doc))]


def test_the_kind_resolves_as_kubectl_does() -> None:
    for name in ("ds", "daemonset", "daemonsets", "DaemonSet", "daemonsets.apps"):
        assert resolve(name) is DS
    assert (DS.api_version, DS.namespaced) == ("apps/v1", True)


def test_defaults_are_kubernetes() -> None:
    spec = defaulted(ds_doc()).spec
    assert spec.update_strategy.type == "RollingUpdate"
    assert spec.update_strategy.rolling_update.max_unavailable.int_val == 1
    assert spec.update_strategy.rolling_update.max_surge.HasField("int_val")
    assert spec.update_strategy.rolling_update.max_surge.int_val == 0
    assert spec.revision_history_limit == 10
    assert spec.template.spec.restart_policy == "Always"
    on_delete = defaulted(ds_doc(updateStrategy={"type": "OnDelete"})).spec.update_strategy
    assert not on_delete.HasField("rolling_update")


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(ds_doc(), id="plain"),
        pytest.param(ds_doc(updateStrategy={"type": "OnDelete"}), id="on-delete"),
        pytest.param(
            ds_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}), id="surge-only"
        ),
        pytest.param(ds_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": "10%"}}), id="percent"),
        pytest.param(ds_doc(minReadySeconds=5, revisionHistoryLimit=0), id="counts"),
    ],
)
def test_valid_daemon_sets_pass(doc: dict[str, Any]) -> None:
    assert causes(doc) == []


_TEMPLATE = {"metadata": {"labels": {"app": "exporter"}}}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(ds_doc(selector={}), "spec.selector: required", id="no-selector"),
        pytest.param(
            ds_doc(selector={"matchLabels": {"app": "other"}}),
            'spec.template.metadata.labels: selector does not match template labels "app=exporter"',
            id="selector-mismatch",
        ),
        pytest.param(
            ds_doc(
                template={
                    **_TEMPLATE,
                    "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "x", "image": "busybox:1"}]},
                }
            ),
            'spec.template.spec.restartPolicy: must be "Always" for a DaemonSet, got "OnFailure"',
            id="restart-policy",
        ),
        pytest.param(
            ds_doc(template={**_TEMPLATE, "spec": {"nodeName": "n1", "containers": [{"name": "x", "image": "b:1"}]}}),
            "spec.template.spec.nodeName: may not be set",
            id="node-name",
        ),
        pytest.param(ds_doc(updateStrategy={"type": "Recreate"}), "spec.updateStrategy.type: ", id="strategy-type"),
        pytest.param(
            ds_doc(updateStrategy={"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 2}}),
            'spec.updateStrategy.rollingUpdate: may not be set when type is "OnDelete"',
            id="rolling-update-with-on-delete",
        ),
        pytest.param(
            ds_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": 0}}),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0",
            id="both-zero",
        ),
        pytest.param(
            ds_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}}),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0",
            id="both-zero-percent",
        ),
        pytest.param(
            ds_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": -1}}),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: must be >= 0",
            id="negative",
        ),
        pytest.param(
            ds_doc(updateStrategy={"rollingUpdate": {"maxSurge": "lots"}}),
            "spec.updateStrategy.rollingUpdate.maxSurge: must be an integer or a percentage",
            id="surge-not-a-number",
        ),
        pytest.param(
            ds_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": "150%"}}),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: must not be greater than 100%",
            id="over-100-percent",
        ),
        pytest.param(ds_doc(minReadySeconds=-1), "spec.minReadySeconds: ", id="min-ready"),
        pytest.param(ds_doc(revisionHistoryLimit=-1), "spec.revisionHistoryLimit: ", id="history"),
    ],
)
def test_invalid_daemon_sets_are_refused_with_their_field_path(doc: dict[str, Any], expected: str) -> None:
    found = causes(doc)
    assert any(c.startswith(expected) for c in found), found


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        pytest.param({"selector": {"matchLabels": {"app": "exporter", "v": "2"}}}, True, id="selector"),
        pytest.param({"minReadySeconds": 3}, False, id="min-ready"),
        pytest.param({"updateStrategy": {"type": "OnDelete"}}, False, id="strategy"),
        pytest.param(
            {"template": {**_TEMPLATE, "spec": {"containers": [{"name": "x", "image": "busybox:2"}]}}},
            False,
            id="template",
        ),
    ],
)
def test_the_selector_is_immutable(change: dict[str, Any], refused: bool) -> None:
    found = [str(c) for c in validate_update(DS, defaulted(ds_doc()), defaulted(ds_doc(**change)))]
    assert found == (["spec.selector: field is immutable"] if refused else [])


def _pod_with_fields(*fields: dict[str, Any]) -> pod_pb2.Pod:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox:1"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": fields}]}
                }
            },
        },
    }
    pod, errors = codec.from_dict(doc, pod_pb2.Pod)
    assert errors == []
    apply_defaults(POD, pod)
    return pod


_AT = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0]"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        pytest.param({"key": "metadata.name", "operator": "In", "values": ["n1"]}, None, id="name-in"),
        pytest.param({"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}, None, id="name-notin"),
        pytest.param(
            {"key": "spec.unschedulable", "operator": "In", "values": ["true"]},
            f'{_AT}.key: must be "metadata.name"',
            id="other-field",
        ),
        pytest.param({"key": "metadata.name", "operator": "Exists"}, f"{_AT}.operator: ", id="operator"),
        pytest.param(
            {"key": "metadata.name", "operator": "In", "values": ["a", "b"]},
            f"{_AT}.values: must have one value",
            id="two-values",
        ),
    ],
)
def test_pod_match_fields(field: dict[str, Any], expected: str | None) -> None:
    found = [str(c) for c in validate(POD, _pod_with_fields(field))]
    if expected is None:
        assert found == []
    else:
        assert any(c.startswith(expected) for c in found), found
