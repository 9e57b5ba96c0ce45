"""The Pod Security levels (privileged / baseline / restricted): what each admits, where a
pod's level comes from (cluster default, Namespace label), and the API refusing at create,
apply and update with the field path and the level."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.apiserver.errors import InvalidError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_security import (
    ClusterPolicy,
    Enforced,
    cluster_default,
    enforced_level,
    violations,
)
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.pod_security import exposes_host_root
from tests.unit.controlplane.test_pod_security import deployment, parsed, pod

CLUSTER = "cluster default: corral server --pod-security"
BASELINE = f'is not allowed by the "baseline" pod security level ({CLUSTER})'
RESTRICTED = f"pod security level ({CLUSTER})"


def sc(**fields: Any) -> dict[str, Any]:
    return {"securityContext": fields}


# What restricted demands of every container: a pod that passes it.
HARDENED = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "capabilities": {"drop": ["ALL"]},
}


def hardened(**more: Any) -> dict[str, Any]:
    return {"securityContext": {**HARDENED, **more}}


def baseline_causes(doc: dict[str, Any], policy: ClusterPolicy | None = None) -> list[str]:
    policy = policy or ClusterPolicy()
    _, msg = parsed(doc)
    return [str(c) for c in violations(policy, cluster_default(policy), msg)]


@pytest.mark.parametrize(
    ("doc", "causes"),
    [
        pytest.param(pod(), [], id="plain"),
        pytest.param(
            pod(sc(capabilities={"add": ["SYS_ADMIN"]})),
            [f'spec.containers[0].securityContext.capabilities.add[0]: "SYS_ADMIN" {BASELINE}'],
            id="sys-admin",
        ),
        pytest.param(
            pod(sc(capabilities={"add": ["CHOWN", "DAC_READ_SEARCH", "ALL"]})),
            [
                f'spec.containers[0].securityContext.capabilities.add[1]: "DAC_READ_SEARCH" {BASELINE}',
                f'spec.containers[0].securityContext.capabilities.add[2]: "ALL" {BASELINE}',
            ],
            id="dac-read-search-and-all",
        ),
        *(
            pytest.param(
                pod(sc(capabilities={"add": [cap]})),
                [f'spec.containers[0].securityContext.capabilities.add[0]: "{cap}" {BASELINE}'],
                id=f"cap-{cap.lower()}",
            )
            for cap in (
                "SYS_MODULE",
                "SYS_PTRACE",
                "SYS_RAWIO",
                "SYS_TIME",
                "SYS_BOOT",
                "NET_ADMIN",
                "BPF",
                "PERFMON",
                "NET_RAW",
                "SYS_RESOURCE",
            )
        ),
        pytest.param(
            pod(
                sc(
                    capabilities={
                        "add": [
                            "AUDIT_WRITE",
                            "CHOWN",
                            "DAC_OVERRIDE",
                            "FOWNER",
                            "FSETID",
                            "KILL",
                            "MKNOD",
                            "NET_BIND_SERVICE",
                            "SETFCAP",
                            "SETGID",
                            "SETPCAP",
                            "SETUID",
                            "SYS_CHROOT",
                        ],
                        "drop": ["NET_RAW"],
                    }
                )
            ),
            [],
            id="docker-default-capabilities",
        ),
        pytest.param(
            pod(sc(privileged=True)),
            [f"spec.containers[0].securityContext.privileged: true {BASELINE}"],
            id="privileged",
        ),
        pytest.param(pod(hostNetwork=True), [f"spec.hostNetwork: true {BASELINE}"], id="host-network"),
        pytest.param(pod(hostPID=True), [f"spec.hostPID: true {BASELINE}"], id="host-pid"),
        pytest.param(pod(hostIPC=True), [f"spec.hostIPC: true {BASELINE}"], id="host-ipc"),
        pytest.param(
            pod(runtimeClassName="process"),
            [f'spec.runtimeClassName: "process" (a command on the host, as the agent\'s user or runAsUser) {BASELINE}'],
            id="process-runtime",
        ),
        pytest.param(
            pod(volumes=[{"name": "h", "hostPath": {"path": "/srv"}}]),
            [f"spec.volumes[0].hostPath: a hostPath volume {BASELINE}"],
            id="host-path",
        ),
        pytest.param(
            pod({"ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}]}),
            [
                f"spec.containers[0].ports[1].hostPort: 8081 {BASELINE}; "
                "leave it 0 (the pod is reached at its own address)"
            ],
            id="host-port",
        ),
        pytest.param(
            deployment(pod(sc(capabilities={"add": ["SYS_ADMIN"]}))),
            [f'spec.template.spec.containers[0].securityContext.capabilities.add[0]: "SYS_ADMIN" {BASELINE}'],
            id="deployment-template",
        ),
        pytest.param(
            {**deployment(pod(hostPID=True)), "kind": "ReplicaSet"},
            [f"spec.template.spec.hostPID: true {BASELINE}"],
            id="replica-set-template",
        ),
        pytest.param(
            {**deployment(pod(hostNetwork=True)), "kind": "DaemonSet"},
            [f"spec.template.spec.hostNetwork: true {BASELINE}"],
            id="daemon-set-template",
        ),
        pytest.param(
            {**deployment(pod(hostNetwork=True)), "kind": "StatefulSet"},
            [f"spec.template.spec.hostNetwork: true {BASELINE}"],
            id="stateful-set-template",
        ),
    ],
)
def test_baseline_refuses_what_takes_the_host(doc: dict[str, Any], causes: list[str]) -> None:
    assert baseline_causes(doc) == causes


HOST_PATH_EXEMPT = ClusterPolicy(allow_host_path=True)
SOCKET_NOTE = "; --allow-host-path admits only other paths"


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        pytest.param("/srv/data", False, id="data-dir"),
        pytest.param("/var/lib/app", False, id="var-lib"),
        pytest.param("/runner", False, id="not-run"),
        pytest.param("/", True, id="root"),
        pytest.param("/run", True, id="run"),
        pytest.param("/run/", True, id="run-slash"),
        pytest.param("/var/run", True, id="var-run"),
        pytest.param("/var", True, id="var"),
        pytest.param("/var/../run", True, id="dotdot"),
        pytest.param("//run", True, id="double-slash"),
        pytest.param("/proc", True, id="proc"),
        pytest.param("/proc/1/root", True, id="proc-root"),
        pytest.param("/run/containerd", True, id="containerd"),
        pytest.param("/var/run/docker.sock", True, id="the-socket"),
        pytest.param("/run/user", False, id="beside-the-socket"),
    ],
)
def test_allow_host_path_still_refuses_the_docker_socket_through_a_parent(path: str, refused: bool) -> None:
    doc = pod(volumes=[{"name": "h", "hostPath": {"path": path}}])
    cause = (
        f"spec.volumes[0].hostPath.path: \"{path}\" (it holds a container engine's socket or the host's /proc) "
        f"{BASELINE}{SOCKET_NOTE}"
    )
    expected = [cause] if refused else []
    assert exposes_host_root(path) is refused
    assert baseline_causes(doc, HOST_PATH_EXEMPT) == expected


def restricted_causes(doc: dict[str, Any]) -> list[str]:
    _, msg = parsed(doc)
    return [str(c) for c in violations(ClusterPolicy(), Enforced("restricted", CLUSTER), msg)]


def must(what: str) -> str:
    return f'must be {what} under the "restricted" {RESTRICTED}'


C0 = "spec.containers[0].securityContext"


@pytest.mark.parametrize(
    ("doc", "causes"),
    [
        pytest.param(pod(hardened()), [], id="hardened"),
        pytest.param(
            pod(hardened(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, runAsUser=1000)),
            [],
            id="net-bind-service",
        ),
        pytest.param(
            pod(
                sc(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]}),
                securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            ),
            [],
            id="pod-level-non-root-and-seccomp",
        ),
        pytest.param(
            pod(),
            [
                f"{C0}.allowPrivilegeEscalation: {must('false')}",
                f"{C0}.runAsNonRoot: {must('true (here or in spec.securityContext)')}",
                f"{C0}.seccompProfile.type: "
                + must('"RuntimeDefault" or "Localhost" (here or in spec.securityContext)'),
                f"{C0}.capabilities.drop: " + must('a list containing "ALL"'),
            ],
            id="nothing-set",
        ),
        pytest.param(
            pod(hardened(allowPrivilegeEscalation=True)),
            [f"{C0}.allowPrivilegeEscalation: {must('false')}"],
            id="escalation",
        ),
        pytest.param(
            pod(hardened(runAsNonRoot=False)),
            [f"{C0}.runAsNonRoot: {must('true')}"],
            id="run-as-non-root-false",
        ),
        pytest.param(
            pod(hardened(runAsUser=0)),
            [f'{C0}.runAsUser: 0 is not allowed by the "restricted" {RESTRICTED}'],
            id="run-as-root",
        ),
        pytest.param(
            pod(hardened(), securityContext={"runAsUser": 0}),
            [f'spec.securityContext.runAsUser: 0 is not allowed by the "restricted" {RESTRICTED}'],
            id="pod-run-as-root",
        ),
        pytest.param(
            pod(hardened(capabilities={"drop": ["ALL"], "add": ["CHOWN"]})),
            [f'{C0}.capabilities.add[0]: "CHOWN" is not allowed by the "restricted" {RESTRICTED}'],
            id="baseline-capability",
        ),
        pytest.param(
            pod(hardened(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]})),
            [f'{C0}.capabilities.add[0]: "SYS_ADMIN" is not allowed by the "restricted" {RESTRICTED}'],
            id="sys-admin",
        ),
        pytest.param(
            pod(hardened(), hostNetwork=True),
            [f'spec.hostNetwork: true is not allowed by the "restricted" {RESTRICTED}'],
            id="inherits-baseline",
        ),
    ],
)
def test_restricted_demands_a_hardened_pod(doc: dict[str, Any], causes: list[str]) -> None:
    assert restricted_causes(doc) == causes


def test_privileged_admits_everything() -> None:
    doc = pod(
        sc(privileged=True, capabilities={"add": ["ALL"]}),
        hostNetwork=True,
        hostPID=True,
        hostIPC=True,
        runtimeClassName="process",
        volumes=[{"name": "h", "hostPath": {"path": "/"}}],
    )
    _, msg = parsed(doc)

    assert violations(ClusterPolicy(), Enforced("privileged", CLUSTER), msg) == []


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param(None, Enforced("baseline", CLUSTER), id="no-namespace-object"),
        pytest.param({"team": "a"}, Enforced("baseline", CLUSTER), id="no-label"),
        pytest.param(
            {"pod-security.kubernetes.io/enforce": "privileged"},
            Enforced("privileged", 'namespace "ops" label pod-security.kubernetes.io/enforce'),
            id="privileged-label",
        ),
        pytest.param(
            {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30"},
            Enforced("restricted", 'namespace "ops" label pod-security.kubernetes.io/enforce'),
            id="restricted-label",
        ),
    ],
)
def test_the_namespace_label_overrides_the_cluster_default(labels: dict[str, str] | None, expected: Enforced) -> None:
    assert enforced_level(ClusterPolicy(), "ops", labels) == expected


def namespace(name: str, level: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": level}},
    }


def in_namespace(doc: dict[str, Any], ns: str) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "namespace": ns}}


SYS_ADMIN = pod(sc(capabilities={"add": ["SYS_ADMIN"]}))


async def test_the_api_refuses_at_create_apply_and_update_and_internal_writers_are_not_held() -> None:
    _, msg = parsed(SYS_ADMIN)
    objects = ObjectStore(MemoryStore())
    guarded = ObjectApi(objects, policy=ClusterPolicy())
    cause = f'spec.containers[0].securityContext.capabilities.add[0]: "SYS_ADMIN" {BASELINE}'

    with pytest.raises(InvalidError) as error:
        await guarded.apply(msg)
    assert cause in str(error.value)
    with pytest.raises(InvalidError):
        await guarded.create(msg)
    created, _ = await ObjectApi(objects).apply(msg)  # the controllers' own API: no policy
    assert list(created.spec.containers[0].security_context.capabilities.add) == ["SYS_ADMIN"]
    # Changing the pod spec of such a pod is held to the level; a labels-only update is not (as Kubernetes).
    relabelled = type(created)()
    relabelled.CopyFrom(created)
    relabelled.metadata.labels["tier"] = "x"
    updated = await guarded.update(relabelled)
    assert updated.metadata.labels["tier"] == "x"
    changed = type(updated)()
    changed.CopyFrom(updated)
    changed.spec.containers[0].image = "busybox:2"
    with pytest.raises(InvalidError) as error:
        await guarded.update(changed)
    assert cause in str(error.value)


async def test_a_namespace_label_sets_the_level_of_its_pods() -> None:
    guarded = ObjectApi(ObjectStore(MemoryStore()), policy=ClusterPolicy())
    for name, level in (("ops", "privileged"), ("apps", "restricted")):
        _, ns = parsed(namespace(name, level))
        await guarded.apply(ns)

    _, in_ops = parsed(in_namespace(SYS_ADMIN, "ops"))
    created, _ = await guarded.apply(in_ops)
    assert created.metadata.namespace == "ops"

    _, in_apps = parsed(in_namespace(pod(hardened(allowPrivilegeEscalation=True)), "apps"))
    with pytest.raises(InvalidError) as error:
        await guarded.apply(in_apps)
    assert (
        'spec.containers[0].securityContext.allowPrivilegeEscalation: must be false under the "restricted" '
        'pod security level (namespace "apps" label pod-security.kubernetes.io/enforce)'
    ) in str(error.value)

    _, in_default = parsed(SYS_ADMIN)
    with pytest.raises(InvalidError):
        await guarded.apply(in_default)


async def test_a_namespace_is_active_and_its_labels_are_validated() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()), policy=ClusterPolicy())
    _, ns = parsed(namespace("ops", "privileged"))
    created, _ = await api.apply(ns)
    assert created.status.phase == "Active"
    assert created.metadata.namespace == ""

    _, bad = parsed(namespace("ops", "admin"))
    with pytest.raises(InvalidError) as error:
        await api.apply(bad)
    assert (
        'metadata.labels.pod-security.kubernetes.io/enforce: must be one of "privileged", "baseline", '
        '"restricted", got "admin"'
    ) in str(error.value)

    _, version = parsed(namespace("ops", "baseline"))
    version.metadata.labels["pod-security.kubernetes.io/enforce-version"] = "1.30"
    with pytest.raises(InvalidError) as error:
        await api.apply(version)
    assert (
        'metadata.labels.pod-security.kubernetes.io/enforce-version: must be "latest" or "v1.<minor>", got "1.30"'
    ) in str(error.value)
