"""The agent's pod subnet: saved in the data dir, or asked for by registering until the control
plane answers; a later registration with another subnet is saved for the next start, with a warning."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from agent.node.pod_cidr import PodCidrState, first_pod_cidr


async def test_a_saved_subnet_is_used_without_registering(tmp_path: Path) -> None:
    state = PodCidrState(tmp_path)
    state.save("10.42.3.0/24")

    async def register() -> str:
        raise AssertionError("no registration needed")

    assert await first_pod_cidr(state, register) == "10.42.3.0/24"
    assert state.in_use == "10.42.3.0/24"


async def test_the_first_start_registers_until_the_control_plane_answers(tmp_path: Path) -> None:
    state = PodCidrState(tmp_path)
    answers: list[Exception | str] = [ConnectionError("refused"), ConnectionError("refused"), "10.42.5.0/24"]

    async def register() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with capture_logs() as logs:
        assert await first_pod_cidr(state, register, retry_in=0.001) == "10.42.5.0/24"
    assert [e["event"] for e in logs].count("pod_cidr_waiting") == 2
    assert (tmp_path / "pod-cidr").read_text().strip() == "10.42.5.0/24"


async def test_no_subnet_from_the_control_plane_means_none_and_nothing_saved(tmp_path: Path) -> None:
    state = PodCidrState(tmp_path)

    async def register() -> str:
        return ""

    with capture_logs() as logs:
        assert await first_pod_cidr(state, register) == ""
    assert any(e["event"] == "pod_cidr_none" for e in logs) and not (tmp_path / "pod-cidr").exists()


async def test_another_subnet_at_a_later_registration_is_saved_for_the_next_start(tmp_path: Path) -> None:
    state = PodCidrState(tmp_path)
    state.save("10.42.3.0/24")
    state.in_use = "10.42.3.0/24"
    with capture_logs() as logs:
        state.heard("10.42.3.0/24")
        state.heard("")
        state.heard("10.42.8.0/24")
    assert [e["event"] for e in logs] == ["pod_cidr_changed"]
    assert state.saved() == "10.42.8.0/24" and state.in_use == "10.42.3.0/24"
