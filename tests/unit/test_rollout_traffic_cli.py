"""`corral rollout promote | abort | status` for BlueGreen and Canary Deployments,
against Deployments and ReplicaSets the controller (on the `sim` model) made."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from corral.cli import rollout
from corral.cli.context import Context
from corral.cli.rollout import CommandError, abort_target, promotion, rollout_group, status_line
from protos import wellknown
from protos.corral.v1 import workloads_pb2
from tests.unit.controllers.sim import Sim
from tests.unit.controllers.traffic_sim import blue_green, canary, hash_of_image, settled


class SimClient:
    """The few client calls the verbs make, answered from a Sim."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.updates = 0

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        copy = workloads_pb2.Deployment()
        copy.CopyFrom(self.sim.deployment)
        return copy

    def update(self, obj: Message) -> Message:
        assert isinstance(obj, workloads_pb2.Deployment)
        self.sim.deployment.metadata.annotations.clear()
        self.sim.deployment.metadata.annotations.update(obj.metadata.annotations)
        self.updates += 1
        return obj

    def list(self, kind: str, namespace: str = "", **_: Any) -> tuple[list[Message], str]:
        assert kind == "ReplicaSet"
        return list(self.sim.replica_sets.values()), "1"

    def close(self) -> None:
        pass


def run(sim: Sim, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = SimClient(sim)  # type: ignore[assignment]
    return CliRunner().invoke(rollout_group, list(args), obj=context)


def sets(sim: Sim) -> list[workloads_pb2.ReplicaSet]:
    return list(sim.replica_sets.values())


def at_pause() -> Sim:
    sim = settled(canary())
    sim.set_image("httpd:2")
    for _ in range(2):
        sim.round()
        sim.mark_ready()
    sim.round()
    return sim


def test_a_rollback_does_not_copy_the_scale_down_deadline() -> None:
    assert wellknown.SCALE_DOWN_AT in rollout.ROLLBACK_SKIPPED_ANNOTATIONS


def test_promote_a_canary_at_a_pause() -> None:
    sim = at_pause()
    result = run(sim, "promote", "deploy/web")
    assert result.exit_code == 0, result.output
    assert result.output == "deployment.apps/web promoted\n"
    assert sim.deployment.metadata.annotations[wellknown.PROMOTE] == "1"
    run(sim, "promote", "deployment", "web", "--full")
    assert sim.deployment.metadata.annotations[wellknown.PROMOTE] == "full"


def test_abort_a_canary() -> None:
    sim = at_pause()
    result = run(sim, "abort", "deploy/web")
    assert result.exit_code == 0 and result.output == "deployment.apps/web aborted\n"
    assert sim.deployment.metadata.annotations[wellknown.ABORT] == hash_of_image(sim, "httpd:2")


def _error(sim: Sim, *args: str) -> str:
    result = run(sim, *args)
    assert result.exit_code == 1, result.output
    return str(result.output)


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        pytest.param(
            lambda: settled(canary()),
            ("promote", "deploy/web"),
            'error: deployment "web" has nothing to promote: no canary is running',
            id="no-canary",
        ),
        pytest.param(
            lambda: settled(canary()),
            ("abort", "deploy/web"),
            'error: deployment "web" has nothing to abort: no canary is running',
            id="nothing-to-abort",
        ),
        pytest.param(
            lambda: settled(blue_green()),
            ("promote", "deploy/web"),
            'error: deployment "web" has nothing to promote: no preview is running',
            id="no-preview",
        ),
        pytest.param(
            lambda: settled(blue_green()),
            ("abort", "deploy/web"),
            "there is no canary to abort; 'corral rollout undo deployment.apps/web' goes back",
            id="abort-blue-green",
        ),
        pytest.param(
            lambda: settled({"type": "RollingUpdate"}),
            ("promote", "deploy/web"),
            'error: deployment "web" uses the RollingUpdate strategy: only BlueGreen and Canary '
            "deployments can be promoted",
            id="rolling-update-promote",
        ),
        pytest.param(
            lambda: settled({"type": "Recreate"}),
            ("abort", "deploy/web"),
            'error: deployment "web" uses the Recreate strategy: only Canary deployments can be aborted',
            id="recreate-abort",
        ),
        pytest.param(
            lambda: settled(canary()),
            ("promote", "pod/web"),
            "error: rollout promote works on deployments, not on pods",
            id="not-a-deployment",
        ),
    ],
)
def test_clear_errors(make: Any, args: tuple[str, ...], message: str) -> None:
    assert message in _error(make(), *args)


def test_promote_refuses_a_canary_waiting_for_its_pods() -> None:
    sim = settled(canary())
    sim.set_image("httpd:2")
    sim.round()
    with pytest.raises(CommandError, match=r"at step 1/4 \(setWeight 10%\), not at a pause; use --full"):
        promotion(sim.deployment, sets(sim), full=False)
    assert promotion(sim.deployment, sets(sim), full=True) == "full"


def test_promote_refuses_changes_the_controller_has_not_seen() -> None:
    sim = at_pause()
    sim.set_image("httpd:3")
    with pytest.raises(CommandError, match="has changes the controller has not seen yet"):
        promotion(sim.deployment, sets(sim), full=True)
    with pytest.raises(CommandError, match="has changes the controller has not seen yet"):
        abort_target(sim.deployment)


def test_promote_a_blue_green_preview_names_its_hash() -> None:
    sim = settled(blue_green(autoPromotionEnabled=False))
    sim.set_image("httpd:2")
    sim.round()
    assert promotion(sim.deployment, sets(sim), full=False) == hash_of_image(sim, "httpd:2")


def test_promote_a_paused_deployment_says_it_waits_for_resume() -> None:
    sim = at_pause()
    sim.pause()
    sim.round()
    result = run(sim, "promote", "deploy/web")
    assert result.exit_code == 0
    assert (
        "promoted (paused: it takes effect once you run 'corral rollout resume deployment.apps/web')" in result.output
    )


# -- rollout status ---------------------------------------------------------------------


def test_canary_status_lines_follow_the_steps() -> None:
    sim = settled(canary())
    assert status_line(sim.deployment, sets(sim)) == ('deployment "web" successfully rolled out', True)
    sim.set_image("httpd:2")
    assert status_line(sim.deployment, sets(sim)) == ("Waiting for deployment spec update to be observed...", False)
    sim.round()
    sim.sync_replica_sets()
    assert status_line(sim.deployment, sets(sim)) == (
        "canary step 1/4: weight 0%, setting weight 10% (0/1 canary pods available)",
        False,
    )
    sim.mark_ready()
    sim.round()
    sim.sync_replica_sets()
    assert status_line(sim.deployment, sets(sim)) == (
        "canary step 2/4: weight 10%, paused until 2026-03-01T12:01:00Z",
        False,
    )
    sim.advance(60)
    for _ in range(3):
        sim.round()
        sim.mark_ready()
    assert status_line(sim.deployment, sets(sim)) == ("canary step 4/4: weight 50%, paused until promoted", False)


def test_blue_green_status_lines() -> None:
    sim = settled(blue_green(autoPromotionEnabled=False))
    sim.set_image("httpd:2")
    sim.round()
    sim.sync_replica_sets()
    assert status_line(sim.deployment, sets(sim)) == ("blue-green: preview 0/3 available", False)
    sim.mark_ready()
    sim.round()
    sim.sync_replica_sets()
    assert status_line(sim.deployment, sets(sim)) == ("blue-green: preview 3/3 available, waiting for promotion", False)
    sim.deployment.metadata.annotations[wellknown.PROMOTE] = hash_of_image(sim, "httpd:2")
    sim.round()
    sim.sync_replica_sets()
    # Done at the switch: the old version's delayed scale-down is not waited for.
    assert status_line(sim.deployment, sets(sim)) == ('deployment "web" successfully rolled out', True)
    assert sim.rs_with_image("httpd:1").spec.replicas == 3


def test_status_of_an_aborted_canary_fails() -> None:
    sim = at_pause()
    sim.deployment.metadata.annotations[wellknown.ABORT] = hash_of_image(sim, "httpd:2")
    sim.round()
    sim.round()
    with pytest.raises(CommandError, match='deployment "web" rollout aborted: abort requested'):
        status_line(sim.deployment, sets(sim))
