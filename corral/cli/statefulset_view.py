"""A StatefulSet's rollout as `kubectl rollout status` tells it (its statefulset status viewer)."""

from __future__ import annotations

from protos import statefulsets
from protos.corral.v1 import workloads_pb2


class NotRollingError(Exception):
    """The set's updateStrategy is not RollingUpdate: there is no rollout to follow."""


def status_line(sts: workloads_pb2.StatefulSet) -> tuple[str, bool]:
    """kubectl's line for `sts`, and whether the rollout is done."""
    spec, st = sts.spec, sts.status
    if spec.update_strategy.type != statefulsets.ROLLING_UPDATE:
        raise NotRollingError("rollout status is only available for RollingUpdate strategy type")
    if st.observed_generation == 0 or sts.metadata.generation > st.observed_generation:
        return "Waiting for statefulset spec update to be observed...", False
    if st.ready_replicas < spec.replicas:
        return f"Waiting for {spec.replicas - st.ready_replicas} pods to be ready...", False
    partition = spec.update_strategy.rolling_update.partition
    if spec.update_strategy.rolling_update.HasField("partition"):
        if st.updated_replicas < spec.replicas - partition:
            return (
                f"Waiting for partitioned roll out to finish: {st.updated_replicas} out of "
                f"{spec.replicas - partition} new pods have been updated...",
                False,
            )
        return f"partitioned roll out complete: {st.updated_replicas} new pods have been updated...", True
    if st.update_revision != st.current_revision:
        return (
            f"waiting for statefulset rolling update to complete {st.updated_replicas} pods at revision "
            f"{st.update_revision}...",
            False,
        )
    return (
        f"statefulset rolling update complete {st.current_replicas} pods at revision {st.current_revision}...",
        True,
    )
