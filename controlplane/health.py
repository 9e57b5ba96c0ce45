"""`StatusService`: what `corral status` shows of the control plane's health.

`etcd_status` is the pure part (what the store and the embedded etcd say in,
the message out); `StatusServicer` asks them at each call.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import structlog

from controlplane.store.errors import StoreError
from controlplane.store.etcd import EtcdStore, MemberStatus
from controlplane.store.release import EtcdBinary, not_recommended, parse_release
from controlplane.store.supervisor import EtcdSupervisor
from protos.corral.v1 import status_pb2, status_pb2_grpc

log = structlog.get_logger(__name__)


def etcd_status(
    endpoints: list[str],
    member: MemberStatus | None,
    error: str,
    *,
    binary: EtcdBinary | None = None,
    restarts: int = 0,
) -> status_pb2.EtcdStatus:
    """The etcd part of `corral status`: ``member`` is None when it did not answer (``error`` says why)."""
    status = status_pb2.EtcdStatus(
        endpoints=endpoints, healthy=member is not None, error=error, embedded=binary is not None, restarts=restarts
    )
    version = member.version if member is not None else str(binary.release) if binary is not None else ""
    release = parse_release(version)
    status.version = version
    if release is not None:
        status.recommended = release.recommended
        status.warning = not_recommended(release, str(binary.path) if binary is not None else ",".join(endpoints))
    if member is not None:
        status.db_size_bytes = member.db_size
        status.alarms.extend(member.alarms)
    if binary is not None:
        status.binary, status.binary_source = str(binary.path), binary.source
    return status


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(
        self,
        address: str,
        store: EtcdStore,
        endpoints: list[str],
        *,
        leading: Callable[[], bool],
        supervisor: EtcdSupervisor | None = None,
    ) -> None:
        self.address = address
        self.store = store
        self.endpoints = endpoints
        self.leading = leading
        self.supervisor = supervisor

    async def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> status_pb2.ClusterStatus:
        member: MemberStatus | None = None
        error = ""
        try:
            member = await self.store.member_status()
        except StoreError as e:
            error = str(e)
            log.debug("etcd_status_failed", error=error)
        supervisor = self.supervisor
        etcd = etcd_status(
            self.endpoints,
            member,
            error,
            binary=supervisor.etcd.binary if supervisor is not None else None,
            restarts=supervisor.restarts if supervisor is not None else 0,
        )
        return status_pb2.ClusterStatus(server=self.address, leading=self.leading(), etcd=etcd)
