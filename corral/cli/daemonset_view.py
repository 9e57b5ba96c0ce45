"""A DaemonSet's rollout as `kubectl rollout status` tells it (its daemon set status viewer)."""

from __future__ import annotations

from protos import daemonsets
from protos.corral.v1 import workloads_pb2


class NotRollingError(Exception):
    """The set's updateStrategy is not RollingUpdate: there is no rollout to follow."""


def status_line(ds: workloads_pb2.DaemonSet) -> tuple[str, bool]:
    """kubectl's line for `ds`, and whether the rollout is done."""
    if ds.spec.update_strategy.type != daemonsets.ROLLING_UPDATE:
        raise NotRollingError("rollout status is only available for RollingUpdate strategy type")
    st, name = ds.status, ds.metadata.name
    if st.observed_generation == 0 or ds.metadata.generation > st.observed_generation:
        return "Waiting for daemon set spec update to be observed...", False
    if st.updated_number_scheduled < st.desired_number_scheduled:
        return (
            f'Waiting for daemon set "{name}" rollout to finish: {st.updated_number_scheduled} out of '
            f"{st.desired_number_scheduled} new pods have been updated...",
            False,
        )
    if st.number_available < st.desired_number_scheduled:
        return (
            f'Waiting for daemon set "{name}" rollout to finish: {st.number_available} of '
            f"{st.desired_number_scheduled} updated pods are available...",
            False,
        )
    return f'daemon set "{name}" successfully rolled out', True
