"""How `corral describe hpa` shows a HorizontalPodAutoscaler, as kubectl does:
the target, each metric's current value against its target, the bounds, the
scaling behavior, the replica counts and the conditions."""

from __future__ import annotations

from datetime import datetime

from corral.cli import printers
from protos.corral.v1 import metrics_pb2

WIDTH = 55
# The rules the controller applies when an HPA has no `behavior` (autoscaling/v2 defaults).
DEFAULT_BEHAVIOR = (
    ("Scale Up", 0, "Max", (("Percent", 100, 15), ("Pods", 4, 15))),
    ("Scale Down", 300, "Max", (("Percent", 100, 15),)),
)


def _line(label: str, value: str) -> str:
    return f"{label + ':':<{WIDTH}}{value}"


def metric_lines(hpa: metrics_pb2.HorizontalPodAutoscaler) -> list[str]:
    """`resource cpu on pods  (as a percentage of request):  35% (175m) / 50%`."""
    statuses = list(hpa.status.current_metrics)
    lines = [_line("Metrics", "( current / target )")]
    for i, spec in enumerate(hpa.spec.metrics):
        status = statuses[i] if i < len(statuses) else None
        name, current, target = printers.hpa_metric(spec, status)
        if spec.type == "Pods":
            label = f'"{name}" on pods'
        elif spec.resource.target.type == "Utilization":
            label = f"resource {name} on pods  (as a percentage of request)"
            raw = status.resource.current.average_value if status is not None else ""
            current = f"{current} ({raw})" if raw and current != "<unknown>" else current
        else:
            label = f"resource {name} on pods"
        lines.append(_line(f"  {label}", f"{current} / {target}"))
    if not hpa.spec.metrics:
        lines.append("  <none>")
    return lines


def behavior_lines(hpa: metrics_pb2.HorizontalPodAutoscaler) -> list[str]:
    behavior = hpa.spec.behavior
    rules: list[tuple[str, int, str, tuple[tuple[str, int, int], ...]]] = []
    if hpa.spec.HasField("behavior"):
        for title, given in (("Scale Up", behavior.scale_up), ("Scale Down", behavior.scale_down)):
            policies = tuple((p.type, p.value, p.period_seconds) for p in given.policies)
            rules.append((title, given.stabilization_window_seconds, given.select_policy, policies))
    else:
        rules = list(DEFAULT_BEHAVIOR)
    lines = ["Behavior:"]
    for title, window, select, policies in rules:
        lines += [
            f"  {title}:",
            f"    Stabilization Window: {window} seconds",
            f"    Select Policy: {select}",
            "    Policies:",
        ]
        lines += [
            f"      - Type: {kind:<8} Value: {value:<4} Period: {period} seconds" for kind, value, period in policies
        ]
    return lines


def describe_lines(hpa: metrics_pb2.HorizontalPodAutoscaler, now: datetime) -> list[str]:
    """The HPA-specific part of `describe` (after the metadata, before the events)."""
    ref = hpa.spec.scale_target_ref
    status = hpa.status
    low = str(hpa.spec.min_replicas) if hpa.spec.HasField("min_replicas") else "<unset>"
    lines = [
        _line("Reference", f"{ref.kind}/{ref.name}"),
        *metric_lines(hpa),
        _line("Min replicas", low),
        _line("Max replicas", str(hpa.spec.max_replicas)),
        *behavior_lines(hpa),
        _line(f"{ref.kind} pods", f"{status.current_replicas} current / {status.desired_replicas} desired"),
    ]
    if status.HasField("last_scale_time"):
        lines.append(_line("Last scale", f"{printers.age(status.last_scale_time, now)} ago"))
    if not status.conditions:
        return [*lines, "Conditions:  <none>"]
    rows = [[c.type, c.status, c.reason, c.message] for c in status.conditions]
    table = printers.format_table(
        [["----", "------", "------", "-------"], *rows], ["Type", "Status", "Reason", "Message"]
    )
    return [*lines, "Conditions:", *("  " + line for line in table.splitlines())]
