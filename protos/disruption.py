"""PodDisruptionBudget field values, condition names and limits (Kubernetes' names). Pure."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

# spec.unhealthyPodEvictionPolicy
IF_HEALTHY_BUDGET: Final = "IfHealthyBudget"
ALWAYS_ALLOW: Final = "AlwaysAllow"
UNHEALTHY_POD_EVICTION_POLICIES: Final = (IF_HEALTHY_BUDGET, ALWAYS_ALLOW)

# status.conditions
DISRUPTION_ALLOWED: Final = "DisruptionAllowed"
SUFFICIENT_PODS: Final = "SufficientPods"
INSUFFICIENT_PODS: Final = "InsufficientPods"
SYNC_FAILED: Final = "SyncFailed"

# An evicted pod that is not gone this long after its eviction counts as healthy again.
DELETION_TIMEOUT: Final = timedelta(minutes=2)
# Evictions not yet confirmed by the controller that a budget may hold.
MAX_DISRUPTED_PODS: Final = 2000
