"""The scheduler's plugins, one module each, and the registry of them by name.

Filters, cheapest first as the default profile runs them:

- `NodeReady` (node_ready): Ready and not cordoned.
- `Runtime` (runtime): the node offers the pod's runtime.
- `ResourcesFit` (resources_fit): cpu, memory (and pod count) requests fit.
- `HostPorts` (host_ports): the pod's fixed host ports are free.
- `NodeSelector` (node_selector): nodeSelector and required node affinity.
- `Taints` (taints): NoSchedule and NoExecute taints are tolerated.
- `VolumeBinding` (volume_binding): the pod's persistent volumes are on, or fit on, the node.

Scores (0..100, higher is better):

- `Spread` (spread): fewer pods of the same owner on the node.
- `LeastAllocated` (least_allocated): most room left; the default strategy.
- `MostAllocated` (most_allocated): fullest node; the bin-packing strategy.
"""

from __future__ import annotations

from controlplane.scheduler.framework import Plugin, Profile, Registry, build_profile
from controlplane.scheduler.plugins.host_ports import HostPorts
from controlplane.scheduler.plugins.least_allocated import LeastAllocated
from controlplane.scheduler.plugins.most_allocated import MostAllocated
from controlplane.scheduler.plugins.node_ready import NodeReady
from controlplane.scheduler.plugins.node_selector import NodeSelector
from controlplane.scheduler.plugins.resources_fit import ResourcesFit
from controlplane.scheduler.plugins.runtime import Runtime
from controlplane.scheduler.plugins.spread import Spread
from controlplane.scheduler.plugins.taints import Taints
from controlplane.scheduler.plugins.volume_binding import VolumeBinding
from controlplane.scheduler.snapshot import LEAST_ALLOCATED, MOST_ALLOCATED

__all__ = ["DEFAULT_FILTERS", "DEFAULT_SCORES", "DEFAULT_STRATEGIES", "REGISTRY", "default_profile"]

_PLUGINS: tuple[Plugin, ...] = (
    NodeReady(),
    Runtime(),
    ResourcesFit(),
    HostPorts(),
    NodeSelector(),
    Taints(),
    VolumeBinding(),
    Spread(),
    LeastAllocated(),
    MostAllocated(),
)

REGISTRY: Registry = {plugin.name: plugin for plugin in _PLUGINS}

DEFAULT_FILTERS = ("NodeReady", "Runtime", "ResourcesFit", "HostPorts", "NodeSelector", "Taints", "VolumeBinding")
DEFAULT_SCORES = {"Spread": 1}
DEFAULT_STRATEGIES = {LEAST_ALLOCATED: ("LeastAllocated", 1), MOST_ALLOCATED: ("MostAllocated", 1)}


def default_profile() -> Profile:
    """The profile corral schedules with unless configured otherwise."""
    return build_profile(
        REGISTRY,
        "default",
        filters=DEFAULT_FILTERS,
        scores=DEFAULT_SCORES,
        strategies=DEFAULT_STRATEGIES,
    )
