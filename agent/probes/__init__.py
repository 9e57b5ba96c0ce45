"""Health probes: HTTP, TCP, gRPC and exec checks, and the threshold logic around them.

    target = resolve_probe_target(probe, container, host=..., port_map=...)   # pure
    result = await run_probe(target, runtime=..., container_id=..., timeout=...)  # never raises
    outcome = tracker.record(result, now)                                     # pure thresholds

Results are values (`ProbeResult`), never exceptions.
"""

from __future__ import annotations

from agent.probes.exec import probe_exec
from agent.probes.grpc_check import probe_grpc
from agent.probes.http import probe_http
from agent.probes.result import ProbeResult
from agent.probes.runner import run_probe
from agent.probes.target import (
    ExecTarget,
    GrpcTarget,
    HttpTarget,
    InvalidTarget,
    ProbeTarget,
    TcpTarget,
    resolve_probe_target,
)
from agent.probes.tcp import probe_tcp
from agent.probes.tracker import (
    Outcome,
    ProbeKind,
    ProbeSettings,
    ProbeState,
    ProbeTracker,
    TrackerState,
    is_passing,
    settings_from_proto,
)

__all__ = [
    "ExecTarget",
    "GrpcTarget",
    "HttpTarget",
    "InvalidTarget",
    "Outcome",
    "ProbeKind",
    "ProbeResult",
    "ProbeSettings",
    "ProbeState",
    "ProbeTarget",
    "ProbeTracker",
    "TcpTarget",
    "TrackerState",
    "is_passing",
    "probe_exec",
    "probe_grpc",
    "probe_http",
    "probe_tcp",
    "resolve_probe_target",
    "run_probe",
    "settings_from_proto",
]
