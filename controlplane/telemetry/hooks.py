"""What the controller runner and the scheduler report, as protocols.

The shells call these; `ControlPlaneTelemetry` implements them. The shells do
not import the Prometheus client, and tests may pass anything that fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from controlplane.informer import Informer

SchedulingResult = Literal["scheduled", "unschedulable", "error"]


class ControllerObserver(Protocol):
    def controllers_started(self, informers: Mapping[str, Informer], queues: Mapping[str, Sized]) -> None:
        """The leader's controllers run on these informers and queues (called on the event loop)."""
        ...

    def controllers_stopped(self) -> None:
        """The term's controllers stopped; their informers and queues are gone."""
        ...

    def synced(self, controller: str, seconds: float, *, failed: bool) -> None:
        """One sync of one key took `seconds`; `failed` when it raised."""
        ...


class SchedulingObserver(Protocol):
    def scheduling_attempts(self, result: SchedulingResult, count: int = 1) -> None:
        """`count` pods were scheduled, found no node, or could not be bound."""
        ...

    def pod_bound(self, created: datetime, bound: datetime) -> None:
        """A pod created at `created` was bound at `bound`."""
        ...
