"""The scheduling framework: extension points, statuses and profiles.

A plugin is a small object with a `name` and one method per extension point:

- `FilterPlugin.filter(pod, node) -> Status`: may `pod` run on `node`? A "no"
  carries short reasons a user can act on ("insufficient memory", "node not
  ready"); the pipeline counts nodes per reason to explain an unschedulable
  pod in one sentence.
- `ScorePlugin.score(pod, node) -> int`: how good a feasible node is, from 0
  (worst) to 100 (best), judged as if `pod` were already placed there.

Both must be functions of the pod's shape and the node alone — never of the
pod's `key` (its name): a batch reuses a node's verdict for every pod of the
same shape while the node is unchanged (`pipeline.Verdicts`).

A `Profile` names the filters in the order to run them (cheap first: the first
one that rejects a node ends that node's evaluation) and the scores with
integer weights. Scoring-strategy plugins (`LeastAllocated`,
`MostAllocated`) are chosen per pod, by the pod's strategy.

A `Registry` maps plugin names to plugins, so a profile can be written as
names (for example from configuration) and resolved with `build_profile`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from controlplane.scheduler.snapshot import NodeInfo, PodRequest

__all__ = [
    "MAX_SCORE",
    "MIN_SCORE",
    "SUCCESS",
    "FilterPlugin",
    "Plugin",
    "Profile",
    "Registry",
    "ScorePlugin",
    "Status",
    "WeightedScore",
    "build_profile",
]

MIN_SCORE = 0
MAX_SCORE = 100


@dataclass(frozen=True)
class Status:
    """A filter's verdict: ok when there are no reasons, rejected otherwise."""

    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons

    @classmethod
    def reject(cls, reason: str, *more: str) -> Status:
        """A rejection for one or more reasons."""
        return cls((reason, *more))


SUCCESS = Status()


@runtime_checkable
class FilterPlugin(Protocol):
    """Decides whether a pod may run on a node."""

    @property
    def name(self) -> str: ...

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status: ...


@runtime_checkable
class ScorePlugin(Protocol):
    """Ranks a feasible node for a pod, 0 (worst) to 100 (best)."""

    @property
    def name(self) -> str: ...

    def score(self, pod: PodRequest, node: NodeInfo) -> int: ...


Plugin = FilterPlugin | ScorePlugin
Registry = Mapping[str, Plugin]


@dataclass(frozen=True)
class WeightedScore:
    plugin: ScorePlugin
    weight: int = 1

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(f"score plugin {self.plugin.name}: weight must be >= 1")


@dataclass(frozen=True)
class Profile:
    """Which plugins run, in which order, with which weights."""

    name: str
    filters: tuple[FilterPlugin, ...]
    scores: tuple[WeightedScore, ...] = ()
    # Scoring strategy (a PodRequest's `strategy`) -> the score it adds.
    strategies: Mapping[str, WeightedScore] = field(default_factory=dict)

    def scores_for(self, pod: PodRequest) -> tuple[WeightedScore, ...]:
        """The scores that rank nodes for `pod`: the common ones and its strategy's."""
        strategy = self.strategies.get(pod.strategy)
        return self.scores if strategy is None else (*self.scores, strategy)


def build_profile(
    registry: Registry,
    name: str,
    *,
    filters: Sequence[str],
    scores: Mapping[str, int],
    strategies: Mapping[str, tuple[str, int]],
) -> Profile:
    """A profile from plugin names: `scores` and `strategies` give weights.

    `strategies` maps a scoring strategy to `(score plugin name, weight)`.
    Raises `ValueError` for an unknown name or a plugin of the wrong kind.
    """
    return Profile(
        name=name,
        filters=tuple(_filter(registry, n) for n in filters),
        scores=tuple(WeightedScore(_scorer(registry, n), w) for n, w in scores.items()),
        strategies={s: WeightedScore(_scorer(registry, n), w) for s, (n, w) in strategies.items()},
    )


def _lookup(registry: Registry, name: str) -> Plugin:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown scheduler plugin {name!r} (known: {known})") from None


def _filter(registry: Registry, name: str) -> FilterPlugin:
    plugin = _lookup(registry, name)
    if not isinstance(plugin, FilterPlugin):
        raise ValueError(f"scheduler plugin {name!r} is not a filter")
    return plugin


def _scorer(registry: Registry, name: str) -> ScorePlugin:
    plugin = _lookup(registry, name)
    if not isinstance(plugin, ScorePlugin):
        raise ValueError(f"scheduler plugin {name!r} is not a score plugin")
    return plugin
