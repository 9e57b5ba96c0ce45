"""What a node reports about its persistent volumes: where it keeps them, and the
directories of released volumes it deleted (or could not).

- `volume_root`: kept on the Node as the annotation `corral.io/volume-root`
  (`storage.VOLUME_ROOT`), where the local-path provisioner puts new volumes;
  written only when it changed.
- a deletion done: the PersistentVolume object is removed (this version, and
  only a volume of this node still waiting for its deletion: a node cannot
  remove another node's volumes); one that failed: the volume goes Failed with
  the node's reason, as Kubernetes shows a failed deleter, and is not retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import structlog

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from corral.common.logs import clip
from protos import storage as st
from protos.corral.v1 import node_pb2, node_service_pb2, storage_pb2
from protos.kinds import by_kind

log = structlog.get_logger(__name__)

NODE = by_kind("Node")
VOLUME = by_kind("PersistentVolume")


class VolumeReports:
    def __init__(self, api: ObjectApi) -> None:
        self.api = api
        # node → the root last written (or seen) on its Node: no store read per report.
        self._roots: dict[str, str] = {}

    def forget(self, node: str) -> None:
        """The node registered (its Node may be new): write its root again at its next report."""
        self._roots.pop(node, None)

    async def record(self, request: node_service_pb2.ReportStatusRequest, now: datetime) -> None:
        if request.volume_root and self._roots.get(request.node_name) != request.volume_root:
            await self._set_root(request.node_name, request.volume_root)
        await self._deleted(request.node_name, request.volume_deletions, now)

    async def _set_root(self, name: str, root: str) -> None:
        for _ in range(3):
            node = await self.api.find(NODE, "", name)
            if not isinstance(node, node_pb2.Node):
                return
            if node.metadata.annotations.get(st.VOLUME_ROOT) != root:
                node.metadata.annotations[st.VOLUME_ROOT] = root
                try:
                    await self.api.write(node)
                except ConflictError:
                    continue
                log.info("node_volume_root", node=name, root=clip(root))
            self._roots[name] = root
            return

    async def _deleted(
        self, node: str, results: Iterable[node_service_pb2.VolumeDeletionResult], now: datetime
    ) -> None:
        for result in results:
            pv = await self.api.find(VOLUME, "", result.name)
            if (
                not isinstance(pv, storage_pb2.PersistentVolume)
                or pv.metadata.uid != result.uid
                or not st.pending_deletion(pv)
                or st.volume_node(pv) != node
            ):
                continue
            try:
                if result.error:
                    pv.status.phase = st.FAILED
                    pv.status.message = f"the node could not delete {st.volume_path(pv)}: {result.error[:500]}"
                    pv.status.last_phase_transition_time.FromDatetime(now.replace(microsecond=0))
                    await self.api.update_status(pv)
                    log.warning("volume_delete_failed", volume=pv.metadata.name, node=node, error=clip(result.error))
                else:
                    await self.api.remove(pv)
                    log.info("volume_deleted", volume=pv.metadata.name, node=node)
            except (ConflictError, NotFoundError):
                continue  # it changed: the node is told again if it still has to delete it
