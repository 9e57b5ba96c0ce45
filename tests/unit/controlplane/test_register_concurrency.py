"""A replica serves a bounded number of registrations at once and refuses the rest at once."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import grpc
import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.informer import Informer
from controlplane.nodeapi import service as node_service
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NodeService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from protos.corral.v1 import node_pb2, node_service_pb2
from protos.kinds import by_kind


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(code, details)


async def test_registrations_past_the_bound_are_refused_at_once_and_admitted_again_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def anyone(context: Any, name: str) -> None:
        return None

    monkeypatch.setattr(node_service, "require_node", anyone)
    objects = ObjectStore(MemoryStore())
    service = NodeService(
        ObjectApi(objects), AssignmentIndex(Informer(objects, by_kind("Pod"))), TunnelRegistry(), register_concurrency=2
    )
    release = asyncio.Event()
    started: list[str] = []

    async def slow(request: node_service_pb2.RegisterRequest) -> tuple[node_pb2.Node, list[str]]:
        started.append(request.node_name)
        await release.wait()
        node = node_pb2.Node()
        node.metadata.name = request.node_name
        return node, []

    monkeypatch.setattr(service, "_register", slow)

    def register(name: str) -> Any:
        return service.Register(node_service_pb2.RegisterRequest(node_name=name), Context())  # type: ignore[arg-type]

    first = [asyncio.create_task(register(n)) for n in ("n1", "n2")]
    while len(started) < 2:
        await asyncio.sleep(0)
    with pytest.raises(Aborted) as refused:
        await register("n3")
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert started == ["n1", "n2"], "the refused registration did no work"
    release.set()
    await asyncio.gather(*first)
    await register("n3")
    assert started == ["n1", "n2", "n3"] and service._registering == 0
