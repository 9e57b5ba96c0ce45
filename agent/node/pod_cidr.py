"""The node's pod subnet: what the control plane gave at registration, kept in the data dir.

The Docker pod network is made with the node's pod subnet (`spec.podCIDR`),
before any pod starts, so the agent needs it at start: the one saved in
`<data dir>/pod-cidr` from an earlier registration, or, on a first start,
the one a registration returns (`first_pod_cidr` registers until the control
plane answers). "" (the control plane has none for the node: its range is
exhausted, or it predates pod subnets) means no pod subnet: Docker picks the
network's subnet and pods publish their ports, as before.

Every later registration sends the subnet in use and reads the Node's:
`PodCidrState.heard` saves a new one and warns that it applies at the next
start (the Node was deleted and got another one back, say).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

FILE = "pod-cidr"


class PodCidrState:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE
        self.in_use = ""

    def saved(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def save(self, cidr: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(cidr + "\n")
        os.replace(tmp, self.path)

    def heard(self, cidr: str) -> None:
        """The control plane's word at a registration."""
        if not cidr or cidr == self.saved():
            return
        try:
            self.save(cidr)
        except OSError as e:
            log.warning("pod_cidr_save_failed", path=str(self.path), reason=e.strerror or str(e))
        if self.in_use and cidr != self.in_use:
            log.warning(
                "pod_cidr_changed",
                pod_cidr=cidr,
                in_use=self.in_use,
                message="the Node has another pod subnet: restart the agent (its pods move to the new subnet)",
            )


async def first_pod_cidr(
    state: PodCidrState,
    register: Callable[[], Awaitable[str]],
    *,
    retry_in: float = 1.0,
    max_retry: float = 10.0,
) -> str:
    """The saved subnet, or the one a registration returns (retried until one succeeds)."""
    saved = state.saved()
    if saved:
        state.in_use = saved
        return saved
    delay = retry_in
    while True:
        try:
            cidr = await register()
            break
        except Exception as e:
            log.warning("pod_cidr_waiting", error=str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        await asyncio.sleep(delay)
        delay = min(max_retry, delay * 2)
    if cidr:
        state.save(cidr)
        log.info("pod_cidr_assigned", pod_cidr=cidr)
    else:
        log.warning(
            "pod_cidr_none",
            message="the control plane gave no pod subnet (range exhausted, or an older control plane): "
            "Docker pods publish their container ports on the node's addresses",
        )
    state.in_use = cidr
    return cidr
