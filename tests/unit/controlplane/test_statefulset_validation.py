"""StatefulSets and headless Services in the API: defaults, validation with field paths,
immutable fields, and pods' hostname and subdomain."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.handlers import listen_port_clashes
from controlplane.apiserver.reserved_ports import reserved_port_causes
from controlplane.apiserver.validation import validate, validate_update
from protos import codec
from protos.corral.v1 import pod_pb2, service_pb2, workloads_pb2
from protos.kinds import by_kind

STS = by_kind("StatefulSet")
SERVICE = by_kind("Service")
POD = by_kind("Pod")


def sts_doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {
            "metadata": {"labels": {"app": "db"}},
            "spec": {
                "containers": [
                    {"name": "db", "image": "redis:7", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
                ]
            },
        },
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ],
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": base}


def defaulted(doc: dict[str, Any]) -> workloads_pb2.StatefulSet:
    sts, errors = codec.from_dict(doc, workloads_pb2.StatefulSet)
    assert errors == []
    apply_defaults(STS, sts)
    return sts


def causes(doc: dict[str, Any]) -> list[str]:
    return [str(c) for c in validate(STS, defaulted(doc))]


def test_defaults_are_kubernetes() -> None:
    spec = defaulted(sts_doc()).spec
    assert spec.replicas == 1
    assert spec.pod_management_policy == "OrderedReady"
    assert spec.update_strategy.type == "RollingUpdate"
    assert spec.update_strategy.rolling_update.HasField("partition")
    assert spec.update_strategy.rolling_update.partition == 0
    assert spec.update_strategy.rolling_update.max_unavailable.int_val == 1
    assert spec.revision_history_limit == 10
    retention = spec.persistent_volume_claim_retention_policy
    assert (retention.when_deleted, retention.when_scaled) == ("Retain", "Retain")
    assert spec.template.spec.restart_policy == "Always"
    on_delete = defaulted(sts_doc(updateStrategy={"type": "OnDelete"})).spec.update_strategy
    assert not on_delete.HasField("rolling_update")


def test_a_valid_statefulset_mounting_its_claim_template_passes() -> None:
    assert causes(sts_doc()) == []
    assert causes(sts_doc(serviceName="", podManagementPolicy="Parallel", replicas=0)) == []


def _without_claims() -> dict[str, Any]:
    doc = sts_doc()
    del doc["spec"]["volumeClaimTemplates"]
    return doc


def _claim(**spec: Any) -> dict[str, Any]:
    doc = sts_doc()
    doc["spec"]["volumeClaimTemplates"][0]["spec"] = spec
    return doc


def _second_claim(name: str) -> dict[str, Any]:
    doc = sts_doc()
    doc["spec"]["volumeClaimTemplates"].append(copy.deepcopy(doc["spec"]["volumeClaimTemplates"][0]))
    doc["spec"]["volumeClaimTemplates"][1]["metadata"]["name"] = name
    return doc


def _volume_named_data() -> dict[str, Any]:
    doc = sts_doc()
    doc["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    return doc


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            sts_doc(selector={"matchLabels": {"app": "other"}}),
            'spec.template.metadata.labels: selector does not match template labels "app=db"',
            id="selector-mismatch",
        ),
        pytest.param(sts_doc(selector={}), "spec.selector: required", id="no-selector"),
        pytest.param(sts_doc(serviceName="DB_1"), "spec.serviceName: must be a DNS-1123 label", id="service-name"),
        pytest.param(
            sts_doc(podManagementPolicy="Burst"),
            'spec.podManagementPolicy: must be one of "OrderedReady", "Parallel", got "Burst"',
            id="policy",
        ),
        pytest.param(
            sts_doc(updateStrategy={"type": "Recreate"}),
            'spec.updateStrategy.type: must be one of "RollingUpdate", "OnDelete", got "Recreate"',
            id="strategy",
        ),
        pytest.param(
            sts_doc(updateStrategy={"type": "OnDelete", "rollingUpdate": {"partition": 1}}),
            'spec.updateStrategy.rollingUpdate: may not be set when type is "OnDelete"',
            id="on-delete-with-rolling-update",
        ),
        pytest.param(
            sts_doc(updateStrategy={"rollingUpdate": {"partition": -1}}),
            "spec.updateStrategy.rollingUpdate.partition: must be >= 0, got -1",
            id="partition",
        ),
        pytest.param(
            sts_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": 0}}),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: must be greater than 0",
            id="max-unavailable-zero",
        ),
        pytest.param(
            sts_doc(updateStrategy={"rollingUpdate": {"maxUnavailable": "120%"}}),
            "spec.updateStrategy.rollingUpdate.maxUnavailable: must not be greater than 100%",
            id="max-unavailable-percent",
        ),
        pytest.param(sts_doc(replicas=-1), "spec.replicas: must be >= 0, got -1", id="replicas"),
        pytest.param(sts_doc(ordinals={"start": -2}), "spec.ordinals.start: must be >= 0, got -2", id="ordinals"),
        pytest.param(sts_doc(revisionHistoryLimit=-1), "spec.revisionHistoryLimit: must be >= 0, got -1", id="history"),
        pytest.param(sts_doc(minReadySeconds=-1), "spec.minReadySeconds: must be >= 0, got -1", id="min-ready"),
        pytest.param(
            sts_doc(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Keep"}),
            'spec.persistentVolumeClaimRetentionPolicy.whenDeleted: must be one of "Retain", "Delete", got "Keep"',
            id="when-deleted",
        ),
        pytest.param(
            sts_doc(persistentVolumeClaimRetentionPolicy={"whenScaled": "Recycle"}),
            'spec.persistentVolumeClaimRetentionPolicy.whenScaled: must be one of "Retain", "Delete", got "Recycle"',
            id="when-scaled",
        ),
        pytest.param(
            _claim(resources={"requests": {"storage": "1Gi"}}),
            "spec.volumeClaimTemplates[0].spec.accessModes: required",
            id="claim-no-access-modes",
        ),
        pytest.param(
            _claim(accessModes=["ReadWriteSometimes"], resources={"requests": {"storage": "1Gi"}}),
            'spec.volumeClaimTemplates[0].spec.accessModes[0]: must be one of "ReadWriteOnce"',
            id="claim-access-mode",
        ),
        pytest.param(
            _claim(accessModes=["ReadWriteOnce"]),
            "spec.volumeClaimTemplates[0].spec.resources.requests.storage: required",
            id="claim-no-size",
        ),
        pytest.param(
            _claim(accessModes=["ReadWriteOnce"], resources={"requests": {"storage": "0"}}),
            "spec.volumeClaimTemplates[0].spec.resources.requests.storage: must be greater than zero",
            id="claim-bad-size",
        ),
        pytest.param(
            _second_claim("data"),
            'spec.volumeClaimTemplates[1].metadata.name: duplicate claim template name "data"',
            id="claim-duplicate",
        ),
        pytest.param(
            _second_claim("Bad_Name"),
            "spec.volumeClaimTemplates[1].metadata.name: must be a DNS-1123 label",
            id="claim-name",
        ),
        pytest.param(
            _volume_named_data(),
            'spec.volumeClaimTemplates[0].metadata.name: "data" is also a volume of spec.template.spec.volumes',
            id="claim-shadows-volume",
        ),
        pytest.param(
            _without_claims(),
            'spec.template.spec.containers[0].volumeMounts[0].name: no volume named "data"',
            id="mount-of-nothing",
        ),
        pytest.param(
            sts_doc(
                template={
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "db", "image": "redis:7"}]},
                }
            ),
            'spec.template.spec.restartPolicy: must be "Always" for a StatefulSet, got "OnFailure"',
            id="restart-policy",
        ),
    ],
)
def test_invalid_statefulsets_are_refused_with_their_field_path(doc: dict[str, Any], expected: str) -> None:
    found = causes(doc)
    assert any(c.startswith(expected) for c in found), found


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        pytest.param({"replicas": 5}, False, id="replicas"),
        pytest.param({"minReadySeconds": 3}, False, id="min-ready"),
        pytest.param({"ordinals": {"start": 1}}, False, id="ordinals"),
        pytest.param({"updateStrategy": {"type": "OnDelete"}}, False, id="update-strategy"),
        pytest.param({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}, False, id="retention"),
        pytest.param({"serviceName": "other"}, True, id="service-name"),
        pytest.param({"podManagementPolicy": "Parallel"}, True, id="policy"),
        pytest.param({"revisionHistoryLimit": 3}, True, id="history"),
        pytest.param({"volumeClaimTemplates": []}, True, id="claim-templates"),
    ],
)
def test_only_some_fields_may_change(change: dict[str, Any], refused: bool) -> None:
    old = defaulted(sts_doc())
    new = defaulted(sts_doc(**change))
    found = [str(c) for c in validate_update(STS, old, new)]
    if refused:
        assert found and found[0].startswith("spec: updates to statefulset spec for fields other than 'replicas'")
    else:
        assert found == []


def test_template_changes_are_allowed() -> None:
    old = defaulted(sts_doc())
    doc = sts_doc()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "redis:7.2"
    assert validate_update(STS, old, defaulted(doc)) == []


# -- headless Services ------------------------------------------------------------------


def service(**spec: Any) -> service_pb2.Service:
    base: dict[str, Any] = {"selector": {"app": "db"}, "ports": [{"port": 6379}]}
    base.update(spec)
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}, "spec": base}
    svc, errors = codec.from_dict(doc, service_pb2.Service)
    assert errors == []
    apply_defaults(SERVICE, svc)
    return svc


def service_causes(**spec: Any) -> list[str]:
    return [str(c) for c in validate(SERVICE, service(**spec))]


def test_headless_defaults_cluster_ips() -> None:
    assert list(service(clusterIP="None").spec.cluster_ips) == ["None"]
    assert service(clusterIPs=["None"]).spec.cluster_ip == "None"
    assert list(service().spec.cluster_ips) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"clusterIP": "None"}, None, id="headless"),
        pytest.param({"clusterIP": "None", "ports": []}, None, id="headless-without-ports"),
        pytest.param({"clusterIP": "None", "publishNotReadyAddresses": True}, None, id="publish-not-ready"),
        pytest.param({"ports": []}, "spec.ports: required", id="ports-needed-unless-headless"),
        pytest.param(
            {"clusterIP": "None", "ports": [], "selector": {}}, "spec.ports: required", id="headless-no-selector"
        ),
        pytest.param({"clusterIP": "10.43.0.10"}, None, id="a-virtual-ip"),
        pytest.param(
            {"clusterIP": "None", "clusterIPs": ["10.0.0.1"]},
            'spec.clusterIPs[0]: must match clusterIP "None"',
            id="cluster-ips-disagree",
        ),
        pytest.param(
            {"clusterIP": "None", "type": "NodePort"},
            'spec.clusterIP: may not be "None" for a Service of type "NodePort"',
            id="headless-node-port-type",
        ),
        pytest.param(
            {"clusterIP": "None", "ports": [{"port": 80, "nodePort": 30080}]},
            "spec.ports[0].nodePort: may not be used when `type` is 'ClusterIP'",
            id="headless-node-port",
        ),
    ],
)
def test_headless_service_validation(spec: dict[str, Any], expected: str | None) -> None:
    found = service_causes(**spec)
    if expected is None:
        assert found == []
    else:
        assert any(c.startswith(expected) for c in found), found


def test_cluster_ip_is_immutable() -> None:
    found = [str(c) for c in validate_update(SERVICE, service(clusterIP="10.43.0.5"), service(clusterIP="None"))]
    assert found == ["spec.clusterIP: field is immutable (delete and re-create the Service)"]
    found = [str(c) for c in validate_update(SERVICE, service(clusterIP="None"), service(clusterIP="10.43.0.5"))]
    assert found == ["spec.clusterIP: field is immutable (delete and re-create the Service)"]
    assert validate_update(SERVICE, service(clusterIP="None"), service(clusterIP="None")) == []
    # A Service stored before corral allocated addresses gets one.
    assert validate_update(SERVICE, service(), service(clusterIP="10.43.0.5")) == []


def test_headless_services_take_no_listen_port() -> None:
    web = service()
    web.metadata.name = "web"
    headless = service(clusterIP="None")
    assert listen_port_clashes(headless, [web]) == []
    assert listen_port_clashes(web, [headless]) == []
    assert reserved_port_causes(service(clusterIP="None", ports=[{"port": 7443}]), {7443: "API"}) == []
    assert reserved_port_causes(service(type="LoadBalancer", ports=[{"port": 7443}]), {7443: "API"}) != []


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        pytest.param("hostname", "db-0", True, id="hostname"),
        pytest.param("subdomain", "db", True, id="subdomain"),
        pytest.param("hostname", "db.0", False, id="hostname-with-dot"),
        pytest.param("subdomain", "DB", False, id="subdomain-upper"),
        pytest.param("hostname", "a" * 64, False, id="hostname-too-long"),
    ],
)
def test_pod_hostname_and_subdomain_are_dns_labels(field: str, value: str, ok: bool) -> None:
    pod = pod_pb2.Pod()
    pod.metadata.name = "p"
    pod.spec.containers.add(name="c", image="busybox:1")
    setattr(pod.spec, field, value)
    apply_defaults(POD, pod)
    found = [str(c) for c in validate(POD, pod)]
    if ok:
        assert found == []
    else:
        assert found and found[0].startswith(f"spec.{field}: must be")
