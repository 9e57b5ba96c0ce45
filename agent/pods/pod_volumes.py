"""One pod's volumes as its worker keeps them (the I/O is `volumes`, run off the event loop).

- The files of configMap, secret and projected volumes: the newest payloads the
  control plane sent, written (atomically) at the worker's next step, again
  whenever they change; a failed write is retried at the step after.
- The volumes are made once per worker (as the kubelet mounts them at pod
  setup, fsGroup ownership included), subPaths resolved at every start.
- A disk emptyDir with a sizeLimit is measured every `SIZE_LIMIT_PERIOD`
  seconds; past it the pod is evicted (`evicted` says why).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import structlog

from agent.pods import volumes
from agent.runtime.base import ContainerSpec
from agent.runtime.errors import ContainerConfigError
from protos.corral.v1 import node_service_pb2, pod_pb2

log = structlog.get_logger(__name__)

# Seconds between two measures of a pod's disk emptyDirs that have a sizeLimit.
SIZE_LIMIT_PERIOD = 5.0


class PodVolumes:
    def __init__(self, volumes_dir: Path, payloads: list[node_service_pb2.VolumePayload]) -> None:
        self.volumes_dir = volumes_dir
        self.payloads = list(payloads)
        # Whether the payloads changed since they were last written.
        self.dirty = bool(self.payloads)
        # Why the pod was evicted; "" while it is not.
        self.evicted = ""
        self._prepared = False
        self._size_checked_at = float("-inf")

    def offer(self, payloads: list[node_service_pb2.VolumePayload]) -> bool:
        """The payloads of the newest set; True when they differ from the ones kept."""
        if payloads == self.payloads:
            return False
        self.payloads = list(payloads)
        self.dirty = True
        return True

    async def sync(self, pod: pod_pb2.Pod) -> None:
        """Write the payloads that changed."""
        self.dirty = False
        for payload in self.payloads:
            try:
                written = await asyncio.to_thread(volumes.sync, self.volumes_dir, pod, payload)
            except (OSError, ValueError, ContainerConfigError) as e:
                self.dirty = True
                log.warning("volume_write_failed", pod=pod.metadata.name, volume=payload.volume, error=str(e))
                continue
            if written:
                log.info("volume_files_written", pod=pod.metadata.name, volume=payload.volume)

    async def check_size_limits(self, pod: pod_pb2.Pod, now: float) -> bool:
        """Is the pod to be evicted? (measured at most every SIZE_LIMIT_PERIOD seconds of ``now``)"""
        if self.evicted:
            return True
        if not volumes.size_limited(pod) or now - self._size_checked_at < SIZE_LIMIT_PERIOD:
            return False
        self._size_checked_at = now
        self.evicted = await asyncio.to_thread(volumes.over_size_limit, self.volumes_dir, pod)
        if self.evicted:
            log.warning("pod_evicted", pod=pod.metadata.name, namespace=pod.metadata.namespace, reason=self.evicted)
        return bool(self.evicted)

    def prepare(self, pod: pod_pb2.Pod, container: pod_pb2.Container, spec: ContainerSpec) -> ContainerSpec:
        """In a thread, before a start: the pod's volumes made (once), and the spec with each
        subPath mount's real source."""
        if not self._prepared:
            volumes.prepare(pod, self.volumes_dir)
            self._prepared = True
        real = volumes.sub_path_sources(self.volumes_dir, pod, container)
        if not real:
            return spec
        mounts = [dataclasses.replace(m, source=real.get(m.target, m.source)) for m in spec.mounts]
        return dataclasses.replace(spec, mounts=mounts)
