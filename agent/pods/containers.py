"""Finding a pod's container in the runtimes, for its logs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from agent.runtime import base
from agent.runtime.base import ContainerInfo, ContainerRuntime
from agent.runtime.errors import RuntimeFailure

__all__ = ["find_container"]


async def find_container(
    runtimes: Iterable[ContainerRuntime], pod_uid: str, container: str, *, previous: bool
) -> tuple[ContainerRuntime, ContainerInfo] | None:
    """The newest run of a pod's container (`previous`: the one before it), in the first of
    `runtimes` that has it; a runtime that fails to answer is passed over."""
    for runtime in runtimes:
        with contextlib.suppress(RuntimeFailure):
            found = await runtime.list({base.LABEL_POD_UID: pod_uid, base.LABEL_CONTAINER: container})
            found.sort(key=lambda c: int(c.labels.get(base.LABEL_ATTEMPT, "0")))
            index = -2 if previous else -1
            if len(found) >= -index:
                return runtime, found[index]
    return None
