"""Service facts every room shares. Pure.

A headless Service (`spec.clusterIP: None`) gets no proxy port on any node:
its DNS name answers its ready pods' addresses instead.

`sessionAffinity: ClientIP` keeps a client's new connections on one backend
for `sessionAffinityConfig.clientIP.timeoutSeconds` (1..86400, default 10800,
as Kubernetes) after its latest one.
"""

from __future__ import annotations

from typing import Final

from protos.corral.v1 import service_pb2

HEADLESS: Final = "None"
CLIENT_IP: Final = "ClientIP"
SESSION_AFFINITIES: Final = ("None", CLIENT_IP)
DEFAULT_AFFINITY_SECONDS: Final = 10800
MAX_AFFINITY_SECONDS: Final = 86400
LOCAL: Final = "Local"


def is_headless(service: service_pb2.Service) -> bool:
    return service.spec.cluster_ip == HEADLESS


def affinity_seconds(spec: service_pb2.ServiceSpec) -> int:
    """The ClientIP affinity timeout of a Service; 0 without affinity."""
    if spec.session_affinity != CLIENT_IP:
        return 0
    client_ip = spec.session_affinity_config.client_ip
    return client_ip.timeout_seconds if client_ip.HasField("timeout_seconds") else DEFAULT_AFFINITY_SECONDS
