"""Int-or-percent values (maxSurge, maxUnavailable, minAvailable) as counts. Pure."""

from __future__ import annotations

from protos.corral.v1 import meta_pb2


def scaled_value(value: meta_pb2.IntOrString, total: int, *, round_up: bool) -> int:
    """An int-or-percent as a count out of `total` (a malformed string counts as 0),
    as Kubernetes' intstr.GetScaledValueFromIntOrPercent."""
    if value.HasField("int_val"):
        return value.int_val
    text = value.str_val.strip()
    if not text.endswith("%") or not text[:-1].isdigit():
        return 0
    percent = int(text[:-1])
    if round_up:
        return -(-percent * total // 100)
    return percent * total // 100
