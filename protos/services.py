"""Service facts every room shares. Pure.

A headless Service (`spec.clusterIP: None`) gets no proxy port on any node:
its DNS name answers its ready pods' addresses instead.
"""

from __future__ import annotations

from typing import Final

from protos.corral.v1 import service_pb2

HEADLESS: Final = "None"


def is_headless(service: service_pb2.Service) -> bool:
    return service.spec.cluster_ip == HEADLESS
