"""The `ContainerRuntime` protocol: what the agent needs from Docker, from plain
processes, or from the in-memory fake.

A "container" is one run of one pod container. Restarting creates a new
container (with an `attempt` label one higher), as the kubelet does, so exit
codes and logs of the previous run stay readable. Every container carries the
agent's labels (pod uid, pod name, namespace, container name, node, epoch,
attempt), which is how an agent restarted after `kill -9` finds and adopts its
own containers.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol

# Label keys every runtime stores with each container.
LABEL_MANAGED = "io.corral.managed"
LABEL_POD_UID = "io.corral.pod.uid"
LABEL_POD_NAME = "io.corral.pod.name"
LABEL_NAMESPACE = "io.corral.pod.namespace"
LABEL_CONTAINER = "io.corral.container"
LABEL_NODE = "io.corral.node"
LABEL_EPOCH = "io.corral.epoch"
LABEL_ATTEMPT = "io.corral.attempt"
# A hash of the container spec it was started from: a changed spec restarts it.
LABEL_SPEC_HASH = "io.corral.spec-hash"


class State(Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    # 0 in a spec: publish on a free host port; the ContainerInfo reports the real one.
    host_port: int = 0
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass(frozen=True)
class Mount:
    """A path of the container backed by something outside it."""

    target: str
    # A host path (hostPath, or an emptyDir's directory under the agent's data dir); "" with `tmpfs`.
    source: str = ""
    read_only: bool = False
    # An in-memory filesystem (emptyDir with medium Memory) instead of `source`.
    tmpfs: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    # Unique per runtime, e.g. "corral_default_web-1_main_3f2a9c1d_0".
    name: str
    image: str
    # Always, IfNotPresent or Never (Kubernetes semantics).
    image_pull_policy: str = "IfNotPresent"
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    ports: list[PortMapping] = field(default_factory=list)
    cpu_limit_millis: int | None = None
    memory_limit_bytes: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    # Resolver settings (the node's DNS server, the namespace's search domains); empty: the runtime's default.
    dns_servers: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    # Extra /etc/hosts entries: (host name, address) (Docker; the process runtime shares the host's file).
    extra_hosts: list[tuple[str, str]] = field(default_factory=list)
    # The container's host name and domain (the pod's: `hostname` prints its name, and /etc/hosts
    # has <hostname>.<domain>); "": the runtime's default. Not applied in the host's network.
    hostname: str = ""
    domainname: str = ""
    # Security settings (securityContext). `user` is "uid" or "uid:gid"; "": the image's user.
    user: str = ""
    # Refuse to start when the effective user would be root (uid 0, or unset and the image's is root).
    run_as_non_root: bool = False
    read_only_rootfs: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    # On unless allowPrivilegeEscalation is explicitly true: setuid binaries gain nothing.
    no_new_privileges: bool = True
    mounts: list[Mount] = field(default_factory=list)
    # Supplementary groups of the container's first process (fsGroup, supplementalGroups).
    group_add: list[int] = field(default_factory=list)
    # The host's namespaces instead of the container's own (hostNetwork, hostPID, hostIPC).
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    labels: Mapping[str, str]
    state: State
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Published ports with the host ports actually bound.
    ports: list[PortMapping] = field(default_factory=list)
    # The container's own address, when it has one (Docker bridge IP); "" otherwise.
    ip: str = ""
    # A short reason from the runtime: "OOMKilled", "Error", "Completed", …
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes


@dataclass(frozen=True)
class ContainerStats:
    """What a running container has used: cumulative CPU time and memory now."""

    # CPU time since the container started, in nanoseconds (all cores together).
    cpu_ns: int
    # Working set: Docker's usage minus inactive file cache; a process's RSS.
    memory_bytes: int


class ContainerRuntime(Protocol):
    """Every method is async and never blocks the event loop."""

    # "docker", "process" or "fake": the runtimeClassName this runtime serves.
    name: str

    async def ensure_image(self, image: str, pull_policy: str) -> None:
        """Make the image present: pull per policy; ImageNotFoundError / ImagePullError."""
        ...

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start a container; ContainerStartError when it cannot start."""
        ...

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        """SIGTERM, wait up to the grace period, then SIGKILL. Stopped already is fine."""
        ...

    async def remove(self, container_id: str) -> None:
        """Remove a stopped container and what it left (logs, work dir). Missing is fine."""
        ...

    async def inspect(self, container_id: str) -> ContainerInfo | None: ...

    async def list(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Containers (running or not) carrying all of these labels."""
        ...

    # `builtins.list`: inside this class body, `list` names the method above.
    # The runtime enforces `timeout` itself (it must also stop the command), hence ASYNC109.
    async def exec(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ExecResult:
        """Run a command inside the container (exec probes); exit code 124 on timeout."""
        ...

    def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        """The container's output (stdout and stderr interleaved), as chunks of lines."""
        ...

    async def stats(self, container_id: str) -> ContainerStats | None:
        """CPU time and memory of a running container; None when it is gone or not running."""
        ...

    async def pod_gateway(self) -> str | None:
        """The host address this runtime's containers reach the node at (the Docker pod
        network's gateway, the network made if missing), where the node proxy and DNS
        server listen for them; None when containers share the host's network."""
        ...

    async def close(self) -> None: ...
