"""Small builders for scheduler tests: NodeInfo / PodRequest values and protos."""

from __future__ import annotations

from typing import Any

from controlplane.scheduler.snapshot import (
    DEFAULT_CPU_MILLIS,
    DEFAULT_MEMORY_BYTES,
    NodeInfo,
    PodRequest,
    Resources,
)
from protos.corral.v1 import meta_pb2, node_pb2, pod_pb2

MI = 1024**2
GI = 1024**3


def node(name: str = "n1", *, cpu: int = 4000, memory: int = 8 * GI, **fields: Any) -> NodeInfo:
    """A ready, empty node with `cpu` millis and `memory` bytes allocatable."""
    return NodeInfo(name=name, allocatable=Resources(cpu, memory), **fields)


def pod(key: str = "default/p", *, cpu: int = 0, memory: int = 0, **fields: Any) -> PodRequest:
    """A pod requesting `cpu` millis and `memory` bytes (scoring defaults when 0)."""
    return PodRequest(
        key=key,
        requests=Resources(cpu, memory),
        nonzero_requests=Resources(cpu or DEFAULT_CPU_MILLIS, memory or DEFAULT_MEMORY_BYTES),
        **fields,
    )


def node_proto(
    name: str = "n1",
    *,
    allocatable: dict[str, str] | None = None,
    ready: str | None = "True",
    **status: Any,
) -> node_pb2.Node:
    conditions = [] if ready is None else [meta_pb2.Condition(type="Ready", status=ready)]
    return node_pb2.Node(
        metadata=meta_pb2.ObjectMeta(name=name),
        status=node_pb2.NodeStatus(
            allocatable=allocatable if allocatable is not None else {"cpu": "4", "memory": "8Gi"},
            conditions=conditions,
            **status,
        ),
    )


def container(
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    host_ports: tuple[tuple[int, str], ...] = (),
) -> pod_pb2.Container:
    return pod_pb2.Container(
        name="c",
        image="busybox:1",
        resources=pod_pb2.ResourceRequirements(requests=requests or {}, limits=limits or {}),
        ports=[pod_pb2.ContainerPort(container_port=80, host_port=port, protocol=proto) for port, proto in host_ports],
    )


def pod_proto(
    name: str = "p",
    *,
    containers: list[pod_pb2.Container] | None = None,
    node_name: str = "",
    phase: str = "",
    owner_uid: str = "",
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> pod_pb2.Pod:
    owners = [meta_pb2.OwnerReference(kind="ReplicaSet", uid=owner_uid, controller=True)]
    return pod_pb2.Pod(
        metadata=meta_pb2.ObjectMeta(
            name=name,
            namespace="default",
            annotations=annotations or {},
            owner_references=owners if owner_uid else [],
        ),
        spec=pod_pb2.PodSpec(
            containers=containers if containers is not None else [container()],
            node_name=node_name,
            **spec,
        ),
        status=pod_pb2.PodStatus(phase=phase),
    )
