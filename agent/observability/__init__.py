"""Prometheus metrics of the node agent, served on `/metrics`.

- `metrics` — `AgentMetrics`: every series, in one registry per agent (never
  the process-global default one); probe results are counted as they come.
- `state` — series computed at scrape time, on the event loop, from what the
  loop owns: the node proxy's per-Service counters, the pod workers, the
  session.
- `loop`, `endpoint` — running a read on the event loop for the scrape
  thread, and the HTTP server (prometheus-client's own). The control plane
  has its own copies: the two planes never import each other.

The series and their labels are listed in docs/operations.md.
"""
