"""Which pods are bound to which node, kept from the pod informer's events.

Each node's stream waits on its own event, so a change to one node's pods wakes
only that node's stream. A set is re-sent only when its fingerprint changes
(a pod added or removed, a pod's spec generation bumped, or a pod marked for
graceful deletion or its deadline brought forward): status writes, which are
most pod changes, do not cause traffic to agents. A terminating pod stays in
its node's set, with its deletionTimestamp, until the object is deleted.

With claim and volume informers, each pod's persistentVolumeClaim volumes get
their directories on the node (`claims`), and the node gets the directories of
its released Delete-policy volumes to remove; a change to a claim or volume
wakes the nodes concerned.

With Secret and ConfigMap informers, each node's pods get the values of the
Secrets and ConfigMaps they reference (`configenv`): a change to one wakes the
nodes whose pods use it, and the set is re-sent when what was resolved changed.
envFrom keys that are not variable names become a Warning event on the pod,
InvalidEnvironmentVariableNames, once per pod and message (`record_warnings`).
The files of their configMap, secret and projected volumes travel beside the
pods (`configvolumes`, `AssignmentSet.volumes`) and are part of the fingerprint:
a changed ConfigMap re-sends the set, and the agent rewrites the files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from controlplane.informer import CacheEvent, Change, Informer
from controlplane.nodeapi import claims, configenv, configvolumes
from protos import storage as st
from protos.corral.v1 import configmap_pb2, node_service_pb2, pod_pb2, secret_pb2, storage_pb2

# Per pod: uid, generation, deletion deadline, digest of its resolved Secret and ConfigMap values.
Fingerprint = frozenset[tuple[str, int, int, str]]


def _deadline(pod: pod_pb2.Pod) -> int:
    """The pod's deletionTimestamp in seconds (0: not being deleted)."""
    return pod.metadata.deletion_timestamp.seconds


def _same_assignment(before: pod_pb2.Pod | None, after: pod_pb2.Pod) -> bool:
    """A status write (most pod changes) leaves the node's fingerprint as it was:
    no need to wake its stream (unless a volume of the pod holds its labels or
    annotations, and they changed)."""
    return (
        before is not None
        and before.metadata.uid == after.metadata.uid
        and before.metadata.generation == after.metadata.generation
        and _deadline(before) == _deadline(after)
        and (
            not configvolumes.projects_metadata(after)
            or (
                before.metadata.labels == after.metadata.labels
                and before.metadata.annotations == after.metadata.annotations
            )
        )
    )


def _same_resolution(before: pod_pb2.Pod, after: pod_pb2.Pod) -> bool:
    """Whether resolving a standalone pod's new version gives what the old one gave: same
    incarnation, spec, labels and annotations (a downwardAPI volume reads them). The spec is
    compared whole (in C), not by generation: a binding changes it without a new generation."""
    return (
        before.metadata.uid == after.metadata.uid
        and before.metadata.labels == after.metadata.labels
        and before.metadata.annotations == after.metadata.annotations
        and before.spec == after.spec
    )


# A pod as its node gets it, the digest of what was resolved for it, its volumes' files.
Resolved = tuple[pod_pb2.Pod, str, list[node_service_pb2.VolumePayload]]


def standalone(pod: pod_pb2.Pod) -> bool:
    """Whether what the node gets of the pod depends on the pod alone: no Secret or ConfigMap
    it takes values from, no configMap, secret, projected or persistentVolumeClaim volume."""
    return not _refs(pod) and not any(
        v.HasField("config_map")
        or v.HasField("secret")
        or v.HasField("projected")
        or v.HasField("persistent_volume_claim")
        for v in pod.spec.volumes
    )


# Shared by the pods that use no Secret, ConfigMap or claim (most): an empty frozenset is 216 bytes.
USES_NOTHING: frozenset[tuple[str, str, str]] = frozenset()


def used_by(pod: pod_pb2.Pod) -> frozenset[tuple[str, str, str]]:
    """(namespace, kind, name) of every Secret and ConfigMap the pod takes values or files from,
    and of every PersistentVolumeClaim it mounts."""
    namespace = pod.metadata.namespace
    claimed = {(namespace, "PersistentVolumeClaim", claim) for _, claim in st.claim_names(pod.spec)}
    return frozenset({(namespace, kind, name) for kind, name in _refs(pod)} | claimed) or USES_NOTHING


def _refs(pod: pod_pb2.Pod) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap the pod takes variables or volume files from."""
    return configenv.refs(pod) | configvolumes.refs(pod)


class AssignmentIndex:
    def __init__(
        self,
        pods: Informer,
        *,
        secrets: Informer | None = None,
        config_maps: Informer | None = None,
        claims: Informer | None = None,
        volumes: Informer | None = None,
    ) -> None:
        self.pods = pods
        self.secrets = secrets
        self.config_maps = config_maps
        self.claims = claims
        self.volumes = volumes
        self._by_node: dict[str, dict[str, pod_pb2.Pod]] = {}
        # Per pod key: a standalone pod version and what its node gets of it.
        self._standalone: dict[str, tuple[pod_pb2.Pod, Resolved]] = {}
        # Per bound pod key: its node and what it uses; per (namespace, kind, name): the pods using it.
        self._uses: dict[str, tuple[str, frozenset[tuple[str, str, str]]]] = {}
        self._users: dict[tuple[str, str, str], set[str]] = {}
        self._events: dict[str, asyncio.Event] = {}
        # Warnings per pod uid already queued, and those waiting for record_warnings.
        self._warned: dict[str, set[str]] = {}
        self._warnings: list[tuple[pod_pb2.Pod, str]] = []
        self._warnings_ready = asyncio.Event()
        pods.add_listener(self._on_event)
        if secrets is not None:
            secrets.add_listener(self._on_secret)
        if config_maps is not None:
            config_maps.add_listener(self._on_config_map)
        if claims is not None:
            claims.add_listener(self._on_claim)
        if volumes is not None:
            volumes.add_listener(self._on_volume)

    def _on_claim(self, ev: CacheEvent) -> None:
        """Wake the nodes with a pod that mounts this claim."""
        self._on_referenced("PersistentVolumeClaim", ev)

    def _on_volume(self, ev: CacheEvent) -> None:
        """Wake the node a volume is on (its pods' mounts, its deletions)."""
        for obj in (ev.obj, ev.prev):
            if isinstance(obj, storage_pb2.PersistentVolume) and st.volume_node(obj):
                self._wake(st.volume_node(obj))

    def _claim(self, namespace: str, name: str) -> storage_pb2.PersistentVolumeClaim | None:
        found = self.claims.items.get(f"{namespace}/{name}") if self.claims is not None else None
        return found if isinstance(found, storage_pb2.PersistentVolumeClaim) else None

    def _volume(self, name: str) -> storage_pb2.PersistentVolume | None:
        found = self.volumes.items.get(name) if self.volumes is not None else None
        return found if isinstance(found, storage_pb2.PersistentVolume) else None

    def _all_volumes(self) -> list[storage_pb2.PersistentVolume]:
        items = self.volumes.items.values() if self.volumes is not None else ()
        return [v for v in items if isinstance(v, storage_pb2.PersistentVolume)]

    def _on_secret(self, ev: CacheEvent) -> None:
        self._on_referenced("Secret", ev)

    def _on_config_map(self, ev: CacheEvent) -> None:
        self._on_referenced("ConfigMap", ev)

    def _on_referenced(self, kind: str, ev: CacheEvent) -> None:
        """Wake the nodes with a pod that takes variables or volume files from this object (or
        mounts this claim): from the index of what bound pods use, not a scan of every node's pods."""
        namespace, name = ev.obj.metadata.namespace, ev.obj.metadata.name  # type: ignore[attr-defined]
        for key in self._users.get((namespace, kind, name), ()):
            self._wake(self._uses[key][0])

    def _index_uses(self, key: str, pod: pod_pb2.Pod | None, node: str, same_spec: bool) -> None:
        """Keep what the bound pod `key` uses (None: not bound any more); its uses are read
        again only when its spec may have changed (another uid or generation, another node)."""
        kept = self._uses.get(key)
        if kept is not None and pod is not None and same_spec and kept[0] == node:
            return
        if kept is not None:
            del self._uses[key]
            for used in kept[1]:
                users = self._users.get(used)
                if users is not None:
                    users.discard(key)
                    if not users:
                        del self._users[used]
        if pod is None:
            return
        uses = used_by(pod)
        self._uses[key] = (node, uses)
        for used in uses:
            self._users.setdefault(used, set()).add(key)

    def _secret(self, namespace: str, name: str) -> secret_pb2.Secret | None:
        found = self.secrets.items.get(f"{namespace}/{name}") if self.secrets is not None else None
        return found if isinstance(found, secret_pb2.Secret) else None

    def _config_map(self, namespace: str, name: str) -> configmap_pb2.ConfigMap | None:
        found = self.config_maps.items.get(f"{namespace}/{name}") if self.config_maps is not None else None
        return found if isinstance(found, configmap_pb2.ConfigMap) else None

    def _on_event(self, ev: CacheEvent) -> None:
        pod = ev.obj
        assert isinstance(pod, pod_pb2.Pod)
        before = ev.prev if isinstance(ev.prev, pod_pb2.Pod) else None
        if before is None and ev.change is Change.DELETED:
            before = pod
        old_node = before.spec.node_name if before is not None else ""
        new_node = "" if ev.change is Change.DELETED else pod.spec.node_name
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if ev.change is Change.DELETED or not new_node:
            self._standalone.pop(key, None)
        if ev.change is Change.DELETED:
            self._warned.pop(pod.metadata.uid, None)
        same_spec = (
            before is not None
            and before.metadata.uid == pod.metadata.uid
            and before.metadata.generation == pod.metadata.generation
        )
        self._index_uses(key, pod if new_node else None, new_node, same_spec)
        if old_node and old_node != new_node:
            left = self._by_node.get(old_node, {})
            left.pop(key, None)
            if not left:  # no entry for a node without pods (nodes come and go)
                self._by_node.pop(old_node, None)
            self._wake(old_node)
        if new_node:
            self._by_node.setdefault(new_node, {})[key] = pod
            if not _same_assignment(before, pod) or old_node != new_node:
                self._wake(new_node)

    def _warn(self, pod: pod_pb2.Pod, messages: list[str]) -> None:
        seen = self._warned.setdefault(pod.metadata.uid, set()) if messages else set()
        for message in messages:
            if message not in seen:
                seen.add(message)
                self._warnings.append((pod, message))
                self._warnings_ready.set()

    async def record_warnings(self, record: Callable[[pod_pb2.Pod, str, str], Awaitable[None]]) -> None:
        """Forever: each new warning about a pod's env as `record(pod, reason, message)`."""
        while True:
            await self._warnings_ready.wait()
            self._warnings_ready.clear()
            pending, self._warnings = self._warnings, []
            for pod, message in pending:
                await record(pod, "InvalidEnvironmentVariableNames", message)

    def _wake(self, node: str) -> None:
        event = self._events.get(node)
        if event is not None:
            event.set()

    def event_for(self, node: str) -> asyncio.Event:
        return self._events.setdefault(node, asyncio.Event())

    def current(self, node: str) -> tuple[node_service_pb2.AssignmentSet, Fingerprint]:
        pods = sorted(self._by_node.get(node, {}).values(), key=lambda p: (p.metadata.namespace, p.metadata.name))
        resolved = []
        volumes: list[node_service_pb2.VolumePayload] = []
        for pod in pods:
            out, digest, payloads = self._resolved(pod, node)
            volumes += payloads
            resolved.append((out, digest))
        fingerprint = frozenset((p.metadata.uid, p.metadata.generation, _deadline(p), digest) for p, digest in resolved)
        deletions = claims.deletions(node, self._all_volumes())
        fingerprint |= {(f"volume-deletion/{d.uid}", 0, 0, d.path) for d in deletions}
        assignment = node_service_pb2.AssignmentSet(
            epoch=self.pods.revision, pods=[p for p, _ in resolved], volumes=volumes, volume_deletions=deletions
        )
        return assignment, fingerprint

    def _resolved(self, pod: pod_pb2.Pod, node: str) -> Resolved:
        """The pod as its node gets it, the digest of what was resolved, its volumes' files. Kept
        per pod version when it depends on nothing but the pod (no Secret, ConfigMap or claim):
        a node's set is rebuilt at each change, and resolving each of 110 pods again is most of it.
        A new version that differs only in status (or what no resolution reads) reuses the result."""
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        kept = self._standalone.get(key)
        if kept is not None:
            if kept[0] is pod:
                return kept[1]
            if kept[1][0] is kept[0] and _same_resolution(kept[0], pod):
                # A status write: the pod goes out as it is (resolution made no copy), digest unchanged.
                result: Resolved = (pod, kept[1][1], kept[1][2])
                self._standalone[key] = (pod, result)
                return result
        out, digest, skipped = configenv.resolve_pod(pod, self._secret, self._config_map)
        self._warn(pod, skipped)
        payloads, error = configvolumes.project(pod, self._secret, self._config_map)
        if error:
            out = configvolumes.with_error(out, error)
        out, volumes_digest = claims.resolve_claims(out, node, self._claim, self._volume)
        result = (out, digest + configvolumes.digest(payloads, error) + volumes_digest, payloads)
        if standalone(pod):
            self._standalone[key] = (pod, result)
        return result
