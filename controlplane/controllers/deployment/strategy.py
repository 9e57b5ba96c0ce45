"""maxSurge and maxUnavailable as numbers of pods (Kubernetes' fenceposts). Pure.

A value is an absolute number or a percentage of `spec.replicas`; a surge
rounds up, an unavailability rounds down, and if both come to 0 the
unavailability becomes 1 so that a rollout can always progress. Recreate,
BlueGreen and Canary Deployments have neither (0 and 0): the last two run the
new version beside the old one at full size and move traffic, not pods.
"""

from __future__ import annotations

from protos.corral.v1 import meta_pb2, workloads_pb2
from protos.deployments import BLUE_GREEN, RECREATE, TRAFFIC_STRATEGIES
from protos.intstr import scaled_value


def resolve_fenceposts(
    max_surge: meta_pb2.IntOrString,
    max_unavailable: meta_pb2.IntOrString,
    desired: int,
) -> tuple[int, int]:
    """(surge, unavailable) for `desired` replicas."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling(d: workloads_pb2.Deployment) -> bool:
    return d.spec.strategy.type != RECREATE and not routes_traffic(d)


def is_recreate(d: workloads_pb2.Deployment) -> bool:
    return d.spec.strategy.type == RECREATE


def routes_traffic(d: workloads_pb2.Deployment) -> bool:
    """BlueGreen or Canary: the controller decides the traffic weights."""
    return d.spec.strategy.type in TRAFFIC_STRATEGIES


def is_blue_green(d: workloads_pb2.Deployment) -> bool:
    return d.spec.strategy.type == BLUE_GREEN


def max_surge(d: workloads_pb2.Deployment) -> int:
    if not is_rolling(d):
        return 0
    ru = d.spec.strategy.rolling_update
    return resolve_fenceposts(ru.max_surge, ru.max_unavailable, d.spec.replicas)[0]


def max_unavailable(d: workloads_pb2.Deployment) -> int:
    if not is_rolling(d) or d.spec.replicas == 0:
        return 0
    ru = d.spec.strategy.rolling_update
    unavailable = resolve_fenceposts(ru.max_surge, ru.max_unavailable, d.spec.replicas)[1]
    return min(unavailable, d.spec.replicas)
