"""How often agents report metrics: the period the control plane hands out with each
Register and Heartbeat answer (`metrics_period_seconds`), as it hands out the heartbeat's.

Every agent reports every `BASE_PERIOD` seconds (the agent's default `--metrics-period`)
while that stays within `BUDGET_PER_SECOND` reports per second to one replica; on a larger
cluster the period is stretched to keep the rate (1,000 nodes: 10 s; 2,000: 20 s) up to
`MAX_PERIOD`. The ceiling keeps what the readers of the store need:

- the store forgets a node or pod not reported for `store.DEFAULT_MAX_AGE` (60 s): two
  periods fit in it, so one late or lost report does not blank `corral top` or an HPA;
- the traffic rate (`pod_requests_per_second`) needs two samples in its
  `store.DEFAULT_RATE_WINDOW` (60 s);
- the HPA syncs every 15 s: at a 30 s period every other sync sees the same usage, as
  Kubernetes' HPA does with metrics-server's default 60 s resolution.

Past `BUDGET_PER_SECOND * MAX_PERIOD` nodes (3,000) the rate grows again (5,000 nodes: 167
reports per second). An agent that ignores the field (older than it) keeps its own period.
"""

from __future__ import annotations

BASE_PERIOD = 10
BUDGET_PER_SECOND = 100
MAX_PERIOD = 30


def metrics_period(
    nodes: int, *, base: int = BASE_PERIOD, budget: int = BUDGET_PER_SECOND, ceiling: int = MAX_PERIOD
) -> int:
    """Seconds between one node's metrics reports when `nodes` report to this replica."""
    stretched = -(-nodes // budget)
    return min(max(base, stretched), max(base, ceiling))
