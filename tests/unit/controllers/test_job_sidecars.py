"""A Job pod's sidecars say nothing about how it failed: the agent stops them (exit 143 or
137) when the app containers are done, so podFailurePolicy onExitCodes skips them."""

from __future__ import annotations

from controlplane.controllers.job import failures
from protos.corral.v1 import batch_pb2, pod_pb2


def failed_pod() -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.spec.init_containers.add(name="proxy", image="x:1", restart_policy="Always")
    p.spec.containers.add(name="main", image="x:1")
    proxy = p.status.init_container_statuses.add(name="proxy")
    proxy.state.terminated.exit_code = 143
    main = p.status.container_statuses.add(name="main")
    main.state.terminated.exit_code = 42
    p.status.phase = "Failed"
    return p


def test_failing_exit_is_the_app_containers_not_the_stopped_sidecars() -> None:
    assert failures.failing_exit(failed_pod()) == ("main", 42)


def test_on_exit_codes_not_in_skips_the_sidecars() -> None:
    policy = batch_pb2.PodFailurePolicy()
    rule = policy.rules.add(action="FailJob")
    rule.on_exit_codes.operator = "NotIn"
    rule.on_exit_codes.values.append(42)
    assert failures.policy_action(policy, failed_pod()) is None
