"""Lookups over the claim, volume and class caches, shared by the scheduler and the volume controller."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.controllers.volumes.reconcile import matches
from controlplane.informer import Informer
from controlplane.scheduler.snapshot import VolumeNeeds
from controlplane.scheduler.volumes import Users, volume_needs
from protos import storage as st
from protos.corral.v1 import pod_pb2, storage_pb2
from protos.pods import is_terminal

VOLUME_KINDS = ("PersistentVolumeClaim", "PersistentVolume", "StorageClass")


def claim_users_by_node(pods: Iterable[pod_pb2.Pod]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(namespace, claim) → (node, pod uid) of each unfinished pod bound with it."""
    users: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for pod in pods:
        if not pod.spec.node_name or is_terminal(pod):
            continue
        for _, claim in st.claim_names(pod.spec):
            users.setdefault((pod.metadata.namespace, claim), []).append((pod.spec.node_name, pod.metadata.uid))
    return users


class VolumeCaches:
    def __init__(self, claims: Informer, volumes: Informer, classes: Informer) -> None:
        self.claims_informer = claims
        self.volumes_informer = volumes
        self.classes_informer = classes

    def claim(self, namespace: str, name: str) -> storage_pb2.PersistentVolumeClaim | None:
        found = self.claims_informer.items.get(f"{namespace}/{name}")
        return found if isinstance(found, storage_pb2.PersistentVolumeClaim) else None

    def volume(self, name: str) -> storage_pb2.PersistentVolume | None:
        found = self.volumes_informer.items.get(name)
        return found if isinstance(found, storage_pb2.PersistentVolume) else None

    def storage_class(self, name: str) -> storage_pb2.StorageClass | None:
        found = self.classes_informer.items.get(name)
        return found if isinstance(found, storage_pb2.StorageClass) else None

    def claims(self) -> list[storage_pb2.PersistentVolumeClaim]:
        return [c for c in self.claims_informer.items.values() if isinstance(c, storage_pb2.PersistentVolumeClaim)]

    def volumes(self) -> list[storage_pb2.PersistentVolume]:
        return [v for v in self.volumes_informer.items.values() if isinstance(v, storage_pb2.PersistentVolume)]

    def classes(self) -> list[storage_pb2.StorageClass]:
        return [c for c in self.classes_informer.items.values() if isinstance(c, storage_pb2.StorageClass)]

    def candidates(self, claim: storage_pb2.PersistentVolumeClaim) -> list[storage_pb2.PersistentVolume]:
        return [v for v in self.volumes() if matches(v, claim)]

    def needs(self, pod: pod_pb2.Pod, users: Users) -> VolumeNeeds:
        return volume_needs(pod, self.claim, self.volume, self.storage_class, users, self.candidates)
