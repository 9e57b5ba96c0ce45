"""Telemetry of the control plane: its Prometheus series, served on `/metrics`.

- `series` — `ControlPlaneTelemetry`: every series, in one registry per
  control plane (never the process-global default one).
- `interceptor` — counts and times every gRPC call (`corral_api_*`).
- `state` — gauges computed at scrape time, on the event loop, from what the
  loop owns: informer caches, work queues, the elector.
- `cluster` — pure helpers for those gauges (pods by phase, heartbeat ages).
- `hooks` — the narrow interfaces the controller runner and the scheduler
  report through, so neither depends on the Prometheus client.
- `corral.common.telemetry.endpoint` — the HTTP server (prometheus-client's own) and `--metrics-listen`.

The series and their labels are listed in docs/operations.md.
"""
