"""`corral describe`: one object in detail, then its recent events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from corral import client as api
from corral.cli import hpa_view, printers, quota_view
from protos import codec
from protos.corral.v1 import configmap_pb2, event_pb2, metrics_pb2, quota_pb2, secret_pb2
from protos.kinds import STORED_ONLY, info_of, meta
from protos.wellknown import DEFAULT_NAMESPACE

MAX_EVENTS = 20


def events_for(c: api.Client, obj: Message) -> list[event_pb2.Event]:
    """The newest events about `obj` (same kind, name and, when set, uid)."""
    info, m = info_of(obj), meta(obj)
    listed, _ = c.list("Event", m.namespace or DEFAULT_NAMESPACE)
    events = [
        e
        for e in listed
        if isinstance(e, event_pb2.Event)
        and e.involved_object.kind == info.kind
        and e.involved_object.name == m.name
        and (not e.involved_object.uid or e.involved_object.uid == m.uid)
    ]
    events.sort(key=_event_time)
    return events[-MAX_EVENTS:]


def _event_time(event: event_pb2.Event) -> tuple[int, int]:
    """When `event` last happened, to the nanosecond: events of one second keep their order."""
    stamp = event.last_timestamp if event.last_timestamp.seconds else event.metadata.creation_timestamp
    return stamp.seconds, stamp.nanos


def _block(title: str, data: Any) -> list[str]:
    if not data:
        return [f"{title}:  <none>"]
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
    return [f"{title}:", *("  " + line for line in text.splitlines())]


def _kv(values: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "<none>"


def _seen(e: event_pb2.Event) -> Timestamp:
    return e.last_timestamp if e.last_timestamp.seconds else e.metadata.creation_timestamp


def secret_lines(secret: secret_pb2.Secret) -> list[str]:
    """Like kubectl: the type, and each key with its size, never a value."""
    lines = [f"Type:               {secret.type}"]
    if secret.HasField("immutable"):
        lines.append(f"Immutable:          {str(secret.immutable).lower()}")
    lines += ["", "Data", "===="]
    lines += [f"{key}:  {len(secret.data[key])} bytes" for key in sorted(secret.data)]
    return lines


def config_map_lines(cm: configmap_pb2.ConfigMap) -> list[str]:
    """Like kubectl: each key and its value; binary values by their size."""
    lines = [f"Immutable:          {str(cm.immutable).lower()}"] if cm.HasField("immutable") else []
    lines += ["", "Data", "===="]
    for key in sorted(cm.data):
        lines += [f"{key}:", "----", cm.data[key], ""]
    lines += ["", "BinaryData", "===="]
    lines += [f"{key}: {len(cm.binary_data[key])} bytes" for key in sorted(cm.binary_data)]
    return lines


def describe(obj: Message, events: list[event_pb2.Event], now: datetime) -> str:
    info, m = info_of(obj), meta(obj)
    doc = codec.to_dict(obj)
    created = ""
    if m.creation_timestamp.seconds:
        created = m.creation_timestamp.ToDatetime(tzinfo=UTC).isoformat()
    lines = [f"Name:               {m.name}"]
    if info.namespaced:
        lines.append(f"Namespace:          {m.namespace}")
    lines += [
        f"Kind:               {info.kind} ({info.api_version})",
        f"UID:                {m.uid}",
        f"Labels:             {_kv(m.labels)}",
        f"Annotations:        {_kv(m.annotations)}",
        f"CreationTimestamp:  {created}",
        f"Generation:         {m.generation}",
        f"ResourceVersion:    {m.resource_version}",
    ]
    if isinstance(obj, metrics_pb2.HorizontalPodAutoscaler):
        lines += hpa_view.describe_lines(obj, now)
    elif isinstance(obj, secret_pb2.Secret):
        lines += secret_lines(obj)
    elif isinstance(obj, configmap_pb2.ConfigMap):
        lines += config_map_lines(obj)
    elif isinstance(obj, quota_pb2.ResourceQuota):
        lines += quota_view.resource_quota_lines(obj)
    elif isinstance(obj, quota_pb2.LimitRange):
        lines += quota_view.limit_range_lines(obj)
    else:
        for key in ("spec", "status") if info.kind != "NetworkPolicy" else ("status",):
            if key in doc:
                lines += _block(key.capitalize(), doc[key])
    if info.kind in STORED_ONLY:
        lines.append(f"Corral:             {STORED_ONLY[info.kind]}")
    if info.kind in ("Event", "EndpointSlice", *STORED_ONLY):
        rest = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        lines += _block(info.kind, rest)
    lines.append("Events:" if events else "Events:  <none>")
    if events:
        rows = [[e.type, e.reason, printers.age(_seen(e), now), e.source.component, e.message] for e in events]
        table = printers.format_table(rows, ["Type", "Reason", "Age", "From", "Message"])
        lines += ["  " + line for line in table.splitlines()]
    return "\n".join(lines)
