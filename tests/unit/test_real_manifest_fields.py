"""Pod fields real manifests carry: the downward API in env (fieldRef), dnsPolicy,
enableServiceLinks, and fields stored with a warning (priorityClassName, pod
(anti-)affinity, preferred node affinity, terminationMessagePolicy)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.pods.downward_env import PodPlace, field_value, resource_value
from agent.pods.service_env import PodNetwork, dns_search
from agent.pods.worker import build_spec
from agent.runtime.docker import container_config
from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.nodeapi import configenv
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from corral.manifest import Document, ManifestError, parse_object
from corral.pod_notes import (
    POD_AFFINITY_NOTE,
    PREFERRED_NODE_NOTE,
    PRIORITY_NOTE,
    PULL_SECRETS_NOTE,
    SHARED_PROCESSES_NOTE,
    SPREAD_NOTE,
    TERMINATION_MESSAGE_NOTE,
)
from protos.corral.v1 import pod_pb2, workloads_pb2

HOST = "192.0.2.10"


def pod_doc(spec: dict[str, Any], container: dict[str, Any] | None = None) -> Document:
    main = {"name": "app", "image": "busybox:1", **(container or {})}
    data = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [main], **spec},
    }
    return Document("pod.yaml", 0, data)


def field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


async def dry_run(message: Any) -> Any:
    created, _ = await ObjectApi(ObjectStore(MemoryStore())).apply(message, dry_run=True)
    return created


def refusal(doc: Document) -> list[str]:
    message = parse_object(doc).message
    with pytest.raises(errors.InvalidError) as e:
        asyncio.run(dry_run(message))
    return [str(c) for c in e.value.causes]


# -- env fieldRef: accepted, defaulted, passed through, read by the agent ----------------


def test_a_field_ref_env_is_accepted_and_its_api_version_defaulted() -> None:
    doc = pod_doc({}, {"env": [field_env("POD_IP", "status.podIP"), field_env("ZONE", "metadata.labels['zone']")]})
    stored = asyncio.run(dry_run(parse_object(doc).message))
    assert [e.value_from.field_ref.api_version for e in stored.spec.containers[0].env] == ["v1", "v1"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            field_env("X", "status.phase"),
            "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: must be one of",
            id="unknown-path",
        ),
        pytest.param(
            {"name": "X", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}},
            'spec.containers[0].env[0].valueFrom.fieldRef.apiVersion: must be "v1", got "v2"',
            id="api-version",
        ),
        pytest.param(
            {
                "name": "X",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}},
            },
            "spec.containers[0].env[0].valueFrom: may not have more than one field specified at a time",
            id="two-sources",
        ),
    ],
)
def test_bad_field_refs_are_refused_with_their_paths(env: dict[str, Any], expected: str) -> None:
    causes = refusal(pod_doc({}, {"env": [env]}))
    assert any(c.startswith(expected) for c in causes), causes


def test_the_control_plane_passes_a_field_ref_env_through_without_looking_anything_up() -> None:
    pod = pod_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web", "default"
    container = pod.spec.containers.add(name="app", image="busybox:1")
    container.env.add(name="NODE").value_from.field_ref.field_path = "spec.nodeName"
    resolved = configenv.resolve_container("default", container, lambda ns, n: None, lambda ns, n: None)
    assert resolved.error == ""
    assert [e.name for e in resolved.env] == ["NODE"]


def downward_pod() -> pod_pb2.Pod:
    pod = pod_pb2.Pod()
    m = pod.metadata
    m.name, m.namespace, m.uid = "web-0", "shop", "uid-1"
    m.labels["zone"] = "a"
    m.annotations["team"] = "blue"
    pod.spec.node_name = "n1"
    pod.spec.service_account_name = "web"
    return pod


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("metadata.name", "web-0", id="name"),
        pytest.param("metadata.namespace", "shop", id="namespace"),
        pytest.param("metadata.uid", "uid-1", id="uid"),
        pytest.param("metadata.labels['zone']", "a", id="label"),
        pytest.param("metadata.labels['absent']", "", id="absent-label"),
        pytest.param("metadata.annotations['team']", "blue", id="annotation"),
        pytest.param("spec.nodeName", "n1", id="node"),
        pytest.param("spec.serviceAccountName", "web", id="service-account"),
        pytest.param("status.hostIP", HOST, id="host-ip"),
        pytest.param("status.podIP", HOST, id="pod-ip-before-one-is-known"),
    ],
)
def test_the_agent_reads_each_downward_field(path: str, expected: str) -> None:
    assert field_value(downward_pod(), path, PodPlace("n1", HOST)) == expected


def test_a_known_pod_ip_is_given_to_later_containers() -> None:
    pod = downward_pod()
    pod.status.pod_ip = "172.17.0.5"
    assert field_value(pod, "status.podIP", PodPlace("n1", HOST)) == "172.17.0.5"


def test_the_container_gets_field_ref_values_and_plain_values() -> None:
    pod = downward_pod()
    container = pod.spec.containers.add(name="app", image="busybox:1")
    container.env.add(name="POD_NAME").value_from.field_ref.field_path = "metadata.name"
    container.env.add(name="HOST_IP").value_from.field_ref.field_path = "status.hostIP"
    container.env.add(name="MODE", value="prod")
    spec = build_spec(pod, container, 0, node="n1", epoch=1, extra_env={}, host_ip=HOST)
    assert spec.env == {"POD_NAME": "web-0", "HOST_IP": HOST, "MODE": "prod"}


# -- dnsPolicy and enableServiceLinks -----------------------------------------------------


NETWORK = PodNetwork({"WEB_SERVICE_HOST": HOST}, (HOST,), dns_search("default"))


def network_spec(**fields: Any) -> Any:
    pod = pod_pb2.Pod(spec=pod_pb2.PodSpec(**fields))
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web", "default", "uid-1"
    container = pod.spec.containers.add(name="app", image="busybox:1")
    return build_spec(pod, container, 0, node="n1", epoch=1, extra_env={}, network=NETWORK)


@pytest.mark.parametrize(
    ("fields", "env", "dns"),
    [
        pytest.param({}, {"WEB_SERVICE_HOST": HOST}, [HOST], id="defaults"),
        pytest.param({"dns_policy": "ClusterFirst"}, {"WEB_SERVICE_HOST": HOST}, [HOST], id="cluster-first"),
        pytest.param(
            {"dns_policy": "ClusterFirstWithHostNet"}, {"WEB_SERVICE_HOST": HOST}, [HOST], id="cluster-first-host-net"
        ),
        pytest.param({"dns_policy": "Default"}, {"WEB_SERVICE_HOST": HOST}, [], id="node-resolver"),
        pytest.param({"host_network": True}, {"WEB_SERVICE_HOST": HOST}, [], id="host-network-falls-back"),
        pytest.param(
            {"host_network": True, "dns_policy": "ClusterFirst"},
            {"WEB_SERVICE_HOST": HOST},
            [],
            id="host-network-first",
        ),
        pytest.param(
            {"host_network": True, "dns_policy": "ClusterFirstWithHostNet"},
            {"WEB_SERVICE_HOST": HOST},
            [HOST],
            id="host-network-with-host-net",
        ),
        pytest.param({"enable_service_links": False}, {}, [HOST], id="no-service-links"),
        pytest.param({"enable_service_links": True}, {"WEB_SERVICE_HOST": HOST}, [HOST], id="service-links"),
    ],
)
def test_dns_policy_and_service_links_shape_the_container(
    fields: dict[str, Any], env: dict[str, str], dns: list[str]
) -> None:
    spec = network_spec(**fields)
    assert spec.env == env
    assert spec.dns_servers == dns
    assert spec.dns_search == (list(NETWORK.dns_search) if dns else [])


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param("None", 'spec.dnsPolicy: unsupported value "None": corral takes no dnsConfig', id="none"),
        pytest.param("Cluster", 'spec.dnsPolicy: must be one of "ClusterFirst"', id="unknown"),
    ],
)
def test_unsupported_dns_policies_are_refused(policy: str, expected: str) -> None:
    causes = refusal(pod_doc({"dnsPolicy": policy}))
    assert any(c.startswith(expected) for c in causes), causes


# -- stored with a warning -------------------------------------------------------------------

ANTI_AFFINITY = {
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ],
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {"matchLabels": {"a": "b"}}}}
        ],
    },
    "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
        ]
    },
}


def test_stored_only_fields_are_accepted_with_a_warning_each() -> None:
    doc = pod_doc(
        {"priorityClassName": "high", "affinity": ANTI_AFFINITY},
        {"terminationMessagePolicy": "FallbackToLogsOnError", "terminationMessagePath": "/dev/termination-log"},
    )
    parsed = parse_object(doc)
    assert [(w.path, w.message) for w in parsed.warnings] == [
        ("spec.priorityClassName", PRIORITY_NOTE),
        ("spec.affinity.podAntiAffinity", POD_AFFINITY_NOTE),
        ("spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution", PREFERRED_NODE_NOTE),
        ("spec.containers[0].terminationMessagePolicy", TERMINATION_MESSAGE_NOTE),
    ]
    stored = asyncio.run(dry_run(parsed.message))
    assert stored.spec.priority_class_name == "high"
    terms = stored.spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    assert terms[0].topology_key == "kubernetes.io/hostname"


def test_a_deployment_template_warns_at_its_own_path() -> None:
    data = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"priorityClassName": "high", "containers": [{"name": "app", "image": "busybox:1"}]},
            },
        },
    }
    parsed = parse_object(Document("d.yaml", 0, data))
    assert isinstance(parsed.message, workloads_pb2.Deployment)
    assert [w.path for w in parsed.warnings] == ["spec.template.spec.priorityClassName"]


@pytest.mark.parametrize(
    ("spec", "container", "expected"),
    [
        pytest.param(
            {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}},
            {},
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: required",
            id="no-topology-key",
        ),
        pytest.param(
            {
                "affinity": {
                    "podAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}
                        ]
                    }
                }
            },
            {},
            "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: "
            "must be in the range 1-100, got 0",
            id="weight",
        ),
        pytest.param(
            {
                "affinity": {
                    "nodeAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "Near"}]}}
                        ]
                    }
                }
            },
            {},
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference"
            '.matchExpressions[0].operator: must be one of "In"',
            id="preferred-node-term",
        ),
        pytest.param(
            {"priorityClassName": "High_Priority"},
            {},
            'spec.priorityClassName: must be a DNS subdomain name, got "High_Priority"',
            id="priority-class-name",
        ),
        pytest.param(
            {},
            {"terminationMessagePolicy": "Always"},
            'spec.containers[0].terminationMessagePolicy: must be one of "File", "FallbackToLogsOnError"',
            id="termination-message-policy",
        ),
    ],
)
def test_stored_fields_are_still_validated(spec: dict[str, Any], container: dict[str, Any], expected: str) -> None:
    causes = refusal(pod_doc(spec, container))
    assert any(c.startswith(expected) for c in causes), causes


# -- env resourceFieldRef -------------------------------------------------------------------


def resource_pod() -> pod_pb2.Pod:
    pod = downward_pod()
    app = pod.spec.containers.add(name="app", image="busybox:1")
    app.resources.requests.update({"cpu": "125m", "memory": "32Mi"})
    app.resources.limits.update({"cpu": "250m", "memory": "64Mi"})
    side = pod.spec.containers.add(name="side", image="busybox:1")
    side.resources.limits["memory"] = "1Gi"
    return pod


PLACE = PodPlace("n1", HOST, {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"})


@pytest.mark.parametrize(
    ("container", "resource", "divisor", "expected"),
    [
        pytest.param("", "requests.cpu", "", "1", id="cpu-request-in-cores-rounded-up"),
        pytest.param("", "limits.cpu", "1m", "250", id="cpu-limit-in-millicores"),
        pytest.param("", "requests.memory", "", str(32 * 2**20), id="memory-request-in-bytes"),
        pytest.param("", "limits.memory", "1Mi", "64", id="memory-limit-in-mebibytes"),
        pytest.param("side", "requests.memory", "1Mi", "1024", id="unset-request-is-the-limit"),
        pytest.param("side", "requests.cpu", "", "0", id="no-request-no-limit"),
        pytest.param("side", "limits.cpu", "", "2", id="unset-limit-is-the-node-allocatable"),
        pytest.param("side", "limits.ephemeral-storage", "1Gi", "10", id="ephemeral-storage-allocatable"),
    ],
)
def test_the_agent_reads_resources_as_the_kubelet_does(
    container: str, resource: str, divisor: str, expected: str
) -> None:
    pod = resource_pod()
    ref = pod_pb2.ResourceFieldSelector(container_name=container, resource=resource, divisor=divisor)
    assert resource_value(pod, pod.spec.containers[0], ref, PLACE) == expected


def test_a_resource_field_ref_env_reaches_the_container() -> None:
    pod = resource_pod()
    app = pod.spec.containers[0]
    app.env.add(name="MEM").value_from.resource_field_ref.resource = "limits.memory"
    resolved = configenv.resolve_container("shop", app, lambda ns, n: None, lambda ns, n: None)
    assert resolved.error == ""
    spec = build_spec(pod, app, 0, node="n1", epoch=1, extra_env={}, host_ip=HOST, allocatable={"memory": "4Gi"})
    assert spec.env["MEM"] == str(64 * 2**20)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param(
            {"resource": "limits.nvidia.com/gpu"},
            "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: must be one of",
            id="resource",
        ),
        pytest.param(
            {"resource": "limits.cpu", "divisor": "1Mi"},
            "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: must be one of 1m, 1 for limits.cpu",
            id="cpu-divisor",
        ),
        pytest.param(
            {"resource": "limits.memory", "divisor": "3"},
            "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: must be one of 1, 1k",
            id="memory-divisor",
        ),
        pytest.param(
            {"resource": "limits.memory", "containerName": "db"},
            'spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName: no container named "db"',
            id="container",
        ),
    ],
)
def test_bad_resource_field_refs_are_refused(ref: dict[str, Any], expected: str) -> None:
    causes = refusal(pod_doc({}, {"env": [{"name": "X", "valueFrom": {"resourceFieldRef": ref}}]}))
    assert any(c.startswith(expected) for c in causes), causes


def test_a_numeric_divisor_is_read_as_a_quantity() -> None:
    env = {"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": 1}}}
    stored = asyncio.run(dry_run(parse_object(pod_doc({}, {"env": [env]})).message))
    assert stored.spec.containers[0].env[0].value_from.resource_field_ref.divisor == "1"


# -- imagePullSecrets ------------------------------------------------------------------------


def test_image_pull_secrets_are_stored_with_a_warning() -> None:
    parsed = parse_object(pod_doc({"imagePullSecrets": [{"name": "regcred"}]}))
    assert [(w.path, w.message) for w in parsed.warnings] == [("spec.imagePullSecrets", PULL_SECRETS_NOTE)]
    stored = asyncio.run(dry_run(parsed.message))
    assert [s.name for s in stored.spec.image_pull_secrets] == ["regcred"]
    assert refusal(pod_doc({"imagePullSecrets": [{}]})) == ["spec.imagePullSecrets[0].name: required"]


# -- hostAliases -----------------------------------------------------------------------------


def test_host_aliases_become_extra_hosts_of_every_docker_container() -> None:
    pod = downward_pod()
    pod.spec.host_aliases.add(ip="10.0.0.5", hostnames=["db", "db.local"])
    pod.spec.host_aliases.add(ip="fd00::1", hostnames=["v6"])
    container = pod.spec.containers.add(name="app", image="busybox:1")
    spec = build_spec(pod, container, 0, node="n1", epoch=1, extra_env={})
    assert spec.extra_hosts == [("db", "10.0.0.5"), ("db.local", "10.0.0.5"), ("v6", "fd00::1")]
    assert container_config(spec)["HostConfig"]["ExtraHosts"] == ["db:10.0.0.5", "db.local:10.0.0.5", "v6:fd00::1"]
    assert (
        "ExtraHosts"
        not in container_config(build_spec(downward_pod(), container, 0, node="n1", epoch=1, extra_env={}))[
            "HostConfig"
        ]
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"hostAliases": [{"ip": "10.0.0.300", "hostnames": ["db"]}]},
            'spec.hostAliases[0].ip: must be a valid IP address, got "10.0.0.300"',
            id="ip",
        ),
        pytest.param(
            {"hostAliases": [{"ip": "10.0.0.3", "hostnames": ["Not_A_Name"]}]},
            'spec.hostAliases[0].hostnames[0]: must be a DNS subdomain name, got "Not_A_Name"',
            id="hostname",
        ),
        pytest.param(
            {"runtimeClassName": "process", "hostAliases": [{"ip": "10.0.0.3", "hostnames": ["db"]}]},
            "spec.hostAliases: not supported with runtimeClassName process",
            id="process-runtime",
        ),
    ],
)
def test_bad_host_aliases_are_refused(spec: dict[str, Any], expected: str) -> None:
    causes = refusal(pod_doc(spec))
    assert any(c.startswith(expected) for c in causes), causes


def test_host_aliases_are_accepted_without_a_warning() -> None:
    parsed = parse_object(pod_doc({"hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}]}))
    assert parsed.warnings == []
    stored = asyncio.run(dry_run(parsed.message))
    assert list(stored.spec.host_aliases[0].hostnames) == ["foo.local", "bar.local"]


# -- topologySpreadConstraints and shareProcessNamespace -------------------------------------

SPREAD = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}


def test_spread_constraints_and_shared_processes_are_stored_with_a_warning_each() -> None:
    spread = {**SPREAD, "labelSelector": {"matchLabels": {"app": "web"}}, "minDomains": 2}
    parsed = parse_object(pod_doc({"topologySpreadConstraints": [spread], "shareProcessNamespace": True}))
    assert [(w.path, w.message) for w in parsed.warnings] == [
        ("spec.topologySpreadConstraints", SPREAD_NOTE),
        ("spec.shareProcessNamespace", SHARED_PROCESSES_NOTE),
    ]
    stored = asyncio.run(dry_run(parsed.message))
    assert stored.spec.topology_spread_constraints[0].min_domains == 2
    assert stored.spec.share_process_namespace is True
    assert parse_object(pod_doc({"shareProcessNamespace": False})).warnings == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"maxSkew": 0}, "maxSkew: must be greater than zero, got 0", id="max-skew"),
        pytest.param({"topologyKey": ""}, "topologyKey: required", id="topology-key"),
        pytest.param({"whenUnsatisfiable": "Never"}, 'whenUnsatisfiable: must be one of "DoNotSchedule"', id="when"),
        pytest.param(
            {"whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2},
            'minDomains: may only be set when whenUnsatisfiable is "DoNotSchedule"',
            id="min-domains",
        ),
        pytest.param({"nodeTaintsPolicy": "Always"}, 'nodeTaintsPolicy: must be one of "Honor"', id="policy"),
    ],
)
def test_bad_spread_constraints_are_refused(change: dict[str, Any], expected: str) -> None:
    causes = refusal(pod_doc({"topologySpreadConstraints": [{**SPREAD, **change}]}))
    assert any(c.startswith(f"spec.topologySpreadConstraints[0].{expected}") for c in causes), causes


# -- network and cloud volumes: refused, saying why ------------------------------------------


@pytest.mark.parametrize("source", ["nfs", "azureDisk", "rbd", "flexVolume", "csi"])
def test_a_remote_volume_source_is_refused_as_not_supported(source: str) -> None:
    doc = pod_doc({"volumes": [{"name": "data", source: {}}]})
    with pytest.raises(ManifestError) as e:
        parse_object(doc)
    [problem] = e.value.problems
    assert problem.path == f"spec.volumes[0].{source}"
    assert problem.message.startswith("not supported: corral's volumes are node-local")


def test_a_remote_persistent_volume_is_refused_as_not_supported() -> None:
    data = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": {"nfs": {}}}
    with pytest.raises(ManifestError) as e:
        parse_object(Document("pv.yaml", 0, data))
    assert [(p.path, p.message) for p in e.value.problems] == [
        ("spec.nfs", "not supported: corral's persistent volumes are directories on a node (hostPath or local)")
    ]
