"""The resource quota controller's rules, pure: when to recount a quota, and
its status from a recount. No I/O.

A quota is recounted when its status does not cover its spec.hard (a new
quota, a changed spec), and when something it counts may have freed quota:
an object of its namespace deleted, a pod finished (Succeeded or Failed: it
no longer counts towards `pods` or compute), a Service whose type or ports
changed. Creates need no recount: the API server charged them.
"""

from __future__ import annotations

from fractions import Fraction

from google.protobuf.message import Message

from controlplane.apiserver.quota_admission import needs_recount, with_status
from protos.corral.v1 import pod_pb2, quota_pb2, service_pb2
from protos.pods import is_terminal
from protos.quota import Usage, parse_list


def needs_status(rq: quota_pb2.ResourceQuota) -> bool:
    """Its status is not for its spec.hard, or lacks a resource's usage."""
    return needs_recount(rq, list(rq.spec.hard))


def may_free(deleted: bool, obj: Message, prev: Message | None) -> bool:
    """A change to `obj` that may lower what its namespace's quotas count."""
    if deleted:
        return True
    if isinstance(obj, pod_pb2.Pod) and isinstance(prev, pod_pb2.Pod):
        return is_terminal(obj) and not is_terminal(prev)
    if isinstance(obj, service_pb2.Service) and isinstance(prev, service_pb2.Service):
        return (obj.spec.type, len(obj.spec.ports)) != (prev.spec.type, len(prev.spec.ports))
    return False


def recounted(rq: quota_pb2.ResourceQuota, usage: Usage) -> quota_pb2.ResourceQuota | None:
    """The quota with the recount as its status; None when its status already says so."""
    updated = with_status(rq, {n: usage.get(n, Fraction(0)) for n in rq.spec.hard})
    return None if updated.status == rq.status else updated


def lowers(rq: quota_pb2.ResourceQuota, usage: Usage) -> bool:
    """The recount is below what the quota's status says is used, for some resource."""
    used = parse_list(rq.status.used)
    return any(usage.get(n, Fraction(0)) < amount for n, amount in used.items() if n in rq.spec.hard)
