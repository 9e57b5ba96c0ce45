"""`corral describe` of ResourceQuotas and LimitRanges, as kubectl shows them:
a table of each resource's use against its hard limit, and of each limit type's bounds."""

from __future__ import annotations

from corral.cli import printers
from protos import quota
from protos.corral.v1 import quota_pb2


def resource_quota_lines(rq: quota_pb2.ResourceQuota) -> list[str]:
    lines: list[str] = []
    scopes = quota.quota_scopes(rq.spec)
    if scopes:
        lines += ["Scopes:  " + ", ".join(scopes)]
    hard = rq.status.hard or rq.spec.hard
    rows = [[name, rq.status.used.get(name, "-"), hard[name]] for name in sorted(hard)]
    table = printers.format_table([["--------", "----", "----"], *rows], ["Resource", "Used", "Hard"])
    return [*lines, *table.splitlines()]


def limit_range_lines(lr: quota_pb2.LimitRange) -> list[str]:
    rows: list[list[str]] = [
        ["----", "--------", "---", "---", "---------------", "-------------", "-----------------------"]
    ]
    for item in lr.spec.limits:
        parts = (item.min, item.max, item.default_request, item.default, item.max_limit_request_ratio)
        names = sorted({name for part in parts for name in part})
        rows += [[item.type, name, *(part.get(name, "-") for part in parts)] for name in names]
    headers = ["Type", "Resource", "Min", "Max", "Default Request", "Default Limit", "Max Limit/Request Ratio"]
    return printers.format_table(rows, headers).splitlines()
