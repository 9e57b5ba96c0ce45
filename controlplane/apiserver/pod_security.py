"""Pod Security levels (Kubernetes' Pod Security Standards) and where a pod's level comes from.

Pure code, no I/O. Three cumulative levels, checked at create, apply and
update of Pods, Deployments, ReplicaSets and DaemonSets (their pod templates):

- `privileged`: everything, including what is root on the host.
- `baseline`: no host namespaces (hostNetwork, hostPID, hostIPC), no privileged
  containers, capabilities.add only from the standard's list, no hostPath
  volumes, no hostPort but 0, no `runtimeClassName: process` (a host process).
- `restricted`: baseline plus allowPrivilegeEscalation false, runAsNonRoot true,
  runAsUser not 0, seccompProfile RuntimeDefault or Localhost, capabilities
  drop ALL and add at most NET_BIND_SERVICE.

The level is the cluster default (`corral server --pod-security`, baseline
unless given), or the `pod-security.kubernetes.io/enforce` label of the pod's
Namespace. `--allow-host-path` admits hostPath volumes below privileged,
except paths that hold the Docker (or containerd) socket or the host's /proc.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.apiserver.errors import Cause
from protos.corral.v1 import pod_pb2
from protos.pod_security import DEFAULT_LEVEL, ENFORCE_LABEL, LEVELS, PRIVILEGED, RESTRICTED, exposes_host_root
from protos.pods import every_container

# Accepted and validated, not acted on: corral enforces its own version of the standards.
UNUSED_LABELS = (
    "pod-security.kubernetes.io/enforce-version",
    "pod-security.kubernetes.io/audit",
    "pod-security.kubernetes.io/audit-version",
    "pod-security.kubernetes.io/warn",
    "pod-security.kubernetes.io/warn-version",
)
_VERSION = re.compile(r"^(latest|v1\.(0|[1-9][0-9]*))$")

# The capabilities baseline admits in capabilities.add: the standard's list (Docker's default set without NET_RAW).
BASELINE_CAPABILITIES = frozenset(
    {
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
    }
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
RESTRICTED_SECCOMP = ("RuntimeDefault", "Localhost")
PROCESS_RUNTIME = "process"


@dataclass(frozen=True)
class ClusterPolicy:
    """What `corral server` admits: the default level, and the hostPath exemption."""

    level: str = DEFAULT_LEVEL
    allow_host_path: bool = False


@dataclass(frozen=True)
class Enforced:
    """The level a pod is held to and where it comes from, for messages."""

    level: str
    source: str


def cluster_default(policy: ClusterPolicy) -> Enforced:
    return Enforced(policy.level, "cluster default: corral server --pod-security")


def enforced_level(policy: ClusterPolicy, namespace: str, namespace_labels: Mapping[str, str] | None) -> Enforced:
    """The namespace's enforce label if it has a valid one, else the cluster default."""
    level = (namespace_labels or {}).get(ENFORCE_LABEL, "")
    if level in LEVELS:
        return Enforced(level, f'namespace "{namespace}" label {ENFORCE_LABEL}')
    return cluster_default(policy)


def validate_namespace_labels(labels: Mapping[str, str]) -> list[Cause]:
    """The pod-security labels of a Namespace: a level, and a version where one is named."""
    causes: list[Cause] = []
    for key, value in sorted(labels.items()):
        path = f"metadata.labels.{key}"
        if key.startswith("pod-security.kubernetes.io/") and key != ENFORCE_LABEL and key not in UNUSED_LABELS:
            known = ", ".join((ENFORCE_LABEL, *UNUSED_LABELS))
            causes.append(Cause(path, f"unknown pod security label (known: {known})"))
        elif key.endswith("-version") and key.startswith("pod-security.kubernetes.io/"):
            if not _VERSION.match(value):
                causes.append(Cause(path, f'must be "latest" or "v1.<minor>", got "{value}"'))
        elif key.startswith("pod-security.kubernetes.io/") and value not in LEVELS:
            shown = ", ".join(f'"{level}"' for level in LEVELS)
            causes.append(Cause(path, f'must be one of {shown}, got "{value}"'))
    return causes


def pod_spec_of(obj: Message) -> tuple[str, pod_pb2.PodSpec] | None:
    """The pod spec an object runs, with its field path; None for other kinds. Every kind
    with a pod template (`spec.template`, as Deployments, StatefulSets, DaemonSets and Jobs
    have; a CronJob's `spec.jobTemplate.spec.template`) is found by its shape, so a workload
    kind added later cannot slip past the levels."""
    if isinstance(obj, pod_pb2.Pod):
        return "spec", obj.spec
    spec = _member(obj, "spec")
    template = _member(spec, "template") if spec is not None else None
    if isinstance(template, pod_pb2.PodTemplateSpec):
        return "spec.template.spec", template.spec
    job_template = _member(spec, "job_template") if spec is not None else None
    job_spec = _member(job_template, "spec") if job_template is not None else None
    template = _member(job_spec, "template") if job_spec is not None else None
    if isinstance(template, pod_pb2.PodTemplateSpec):
        return "spec.jobTemplate.spec.template.spec", template.spec
    return None


def _member(message: Message, name: str) -> Message | None:
    """The message field `name` of `message`, or None when it has no such field."""
    if name not in message.DESCRIPTOR.fields_by_name:
        return None
    value = getattr(message, name)
    return value if isinstance(value, Message) else None


class _Check:
    """Collects the causes one pod spec breaks at one level."""

    def __init__(self, enforced: Enforced) -> None:
        self.enforced = enforced
        self.causes: list[Cause] = []

    def forbid(self, path: str, shown: str, note: str = "") -> None:
        e = self.enforced
        self.causes.append(
            Cause(path, f'{shown} is not allowed by the "{e.level}" pod security level ({e.source}){note}')
        )

    def require(self, path: str, what: str) -> None:
        e = self.enforced
        self.causes.append(Cause(path, f'must be {what} under the "{e.level}" pod security level ({e.source})'))


def violations(policy: ClusterPolicy, enforced: Enforced, obj: Message) -> list[Cause]:
    """What the object's pod spec asks for that the level forbids (nothing at privileged)."""
    found = pod_spec_of(obj)
    if found is None or enforced.level == PRIVILEGED:
        return []
    path, spec = found
    check = _Check(enforced)
    _baseline(check, policy, path, spec)
    if enforced.level == RESTRICTED:
        _restricted(check, path, spec)
    return check.causes


def _baseline(check: _Check, policy: ClusterPolicy, path: str, spec: pod_pb2.PodSpec) -> None:
    if spec.runtime_class_name == PROCESS_RUNTIME:
        check.forbid(f"{path}.runtimeClassName", '"process" (a command on the host, as the agent\'s user or runAsUser)')
    for field, value in (("hostNetwork", spec.host_network), ("hostPID", spec.host_pid), ("hostIPC", spec.host_ipc)):
        if value:
            check.forbid(f"{path}.{field}", "true")
    for i, volume in enumerate(spec.volumes):
        if not volume.HasField("host_path"):
            continue
        at = f"{path}.volumes[{i}].hostPath"
        if not policy.allow_host_path:
            check.forbid(at, "a hostPath volume")
        elif exposes_host_root(volume.host_path.path):
            shown = f"\"{volume.host_path.path}\" (it holds a container engine's socket or the host's /proc)"
            check.forbid(f"{at}.path", shown, note="; --allow-host-path admits only other paths")
    for where, c in every_container(spec):
        at = f"{path}.{where}"
        sc = c.security_context
        if sc.privileged:
            check.forbid(f"{at}.securityContext.privileged", "true")
        for j, name in enumerate(sc.capabilities.add):
            if name not in BASELINE_CAPABILITIES:
                check.forbid(f"{at}.securityContext.capabilities.add[{j}]", f'"{name}"')
        for j, port in enumerate(c.ports):
            if port.host_port:
                check.forbid(
                    f"{at}.ports[{j}].hostPort",
                    str(port.host_port),
                    note="; leave it 0 (the pod is reached at its own address)",
                )


def _restricted(check: _Check, path: str, spec: pod_pb2.PodSpec) -> None:
    psc = spec.security_context
    pod_seccomp = psc.seccomp_profile.type in RESTRICTED_SECCOMP
    if psc.HasField("run_as_non_root") and not psc.run_as_non_root:
        check.require(f"{path}.securityContext.runAsNonRoot", "true")
    if psc.HasField("run_as_user") and psc.run_as_user == 0:
        check.forbid(f"{path}.securityContext.runAsUser", "0")
    for where, c in every_container(spec):
        at = f"{path}.{where}.securityContext"
        sc = c.security_context
        if not (sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation):
            check.require(f"{at}.allowPrivilegeEscalation", "false")
        if sc.HasField("run_as_non_root") and not sc.run_as_non_root:
            check.require(f"{at}.runAsNonRoot", "true")
        elif not sc.HasField("run_as_non_root") and not psc.HasField("run_as_non_root"):
            check.require(f"{at}.runAsNonRoot", "true (here or in spec.securityContext)")
        if sc.HasField("run_as_user") and sc.run_as_user == 0:
            check.forbid(f"{at}.runAsUser", "0")
        if sc.seccomp_profile.type:
            if sc.seccomp_profile.type not in RESTRICTED_SECCOMP:
                check.require(f"{at}.seccompProfile.type", '"RuntimeDefault" or "Localhost"')
        elif not pod_seccomp:
            check.require(
                f"{at}.seccompProfile.type", '"RuntimeDefault" or "Localhost" (here or in spec.securityContext)'
            )
        if "ALL" not in sc.capabilities.drop:
            check.require(f"{at}.capabilities.drop", 'a list containing "ALL"')
        for j, name in enumerate(sc.capabilities.add):
            if name in BASELINE_CAPABILITIES and name not in RESTRICTED_CAPABILITIES:
                check.forbid(f"{at}.capabilities.add[{j}]", f'"{name}"')
