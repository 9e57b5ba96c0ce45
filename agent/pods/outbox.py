"""The status outbox: each pod's newest status, queued for the session to send.

Workers `put` a pod's status; the session's reporter `take`s what is queued in
batches and `requeue`s what it could not deliver (a newer status of the same
pod, queued meanwhile, wins). The newest status of every pod is also kept, so
that after a reconnect `resend_all` queues them all again, except for pods the
control plane said it does not know (`forget`) or that left this node (`drop`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from protos.corral.v1 import node_service_pb2, pod_pb2

__all__ = ["StatusOutbox"]

Report = node_service_pb2.PodStatusReport


class StatusOutbox:
    def __init__(self) -> None:
        self._queued: dict[str, Report] = {}
        self._latest: dict[str, Report] = {}
        self.ready = asyncio.Event()  # set while something is queued
        # Where this node keeps persistent volumes: sent with every report, and once after each
        # (re)connect even without pod reports, so the control plane learns it before any pod needs it.
        self.volume_root = ""
        self._announce = False
        self._volume_results: list[node_service_pb2.VolumeDeletionResult] = []

    def put_volume_result(self, result: node_service_pb2.VolumeDeletionResult) -> None:
        self._volume_results.append(result)
        self.ready.set()

    def take_volume_results(self) -> tuple[bool, list[node_service_pb2.VolumeDeletionResult]]:
        """Whether a report must go even without pod statuses, and the deletion outcomes queued."""
        due = self._announce or bool(self._volume_results)
        results, self._volume_results, self._announce = self._volume_results, [], False
        return due, results

    def put(self, pod: pod_pb2.Pod, status: pod_pb2.PodStatus, *, terminated: bool = False) -> None:
        """Queue a pod's status; `terminated`: a terminating pod's containers have all stopped."""
        r = Report(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            status=status,
            terminated=terminated,
        )
        self._queued[r.uid] = r
        self._latest[r.uid] = r
        self.ready.set()

    def drop(self, uid: str) -> None:
        """The pod left this node: neither send nor resend its status."""
        self._latest.pop(uid, None)
        self._queued.pop(uid, None)

    def resend_all(self) -> None:
        """After a reconnect, queue every pod's newest status again (and the volume root)."""
        self._queued.update(self._latest)
        self._announce = bool(self.volume_root)
        if self._queued or self._announce:
            self.ready.set()

    def take(self) -> list[Report]:
        """Everything queued; the queue is left empty."""
        reports = list(self._queued.values())
        self._queued.clear()
        if not self._announce and not self._volume_results:
            self.ready.clear()
        return reports

    def requeue(self, reports: Iterable[Report]) -> None:
        """Reports that could not be sent go back in line, unless newer ones replaced them."""
        for r in reports:
            self._queued.setdefault(r.uid, r)
        if self._queued:
            self.ready.set()

    def forget(self, uids: Iterable[str]) -> None:
        """The control plane no longer knows these pods: stop resending them."""
        for uid in uids:
            self._latest.pop(uid, None)
