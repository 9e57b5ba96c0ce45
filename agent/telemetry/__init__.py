"""Telemetry of the node agent: its Prometheus series, served on `/metrics`.

- `series` — `AgentTelemetry`: every series, in one registry per agent (never
  the process-global default one); probe results are counted as they come.
- `state` — series computed at scrape time, on the event loop, from what the
  loop owns: the node proxy's per-Service counters, the pod workers, the
  session.
- `corral.common.telemetry` (`loop`, `endpoint`), shared with the control
  plane — running a read on the event loop for the scrape thread, and the
  HTTP server (prometheus-client's own).

The series and their labels are listed in docs/operations.md.
"""
