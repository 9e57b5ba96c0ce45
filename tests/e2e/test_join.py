"""Joining with `corral agent --token`, as a user does it: a valid token joins;
a wrong, expired or revoked token, and a server presenting another CA, are
refused with a clear message on both sides and nothing registered; revoking a
node cuts it off; `corral login` gives a second machine admin credentials."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, free_port, kill_process_containers, wait_until

RUNTIMES = ("process",)


def agent(server: ServerProcess, tmp_path: Path, name: str, token: str | None) -> AgentProcess:
    env = {k: v for k, v in server.env.items() if k != "CORRAL_TOKEN"}
    if token is not None:
        env["CORRAL_TOKEN"] = token
    return AgentProcess(
        server.address,
        name,
        tmp_path / name,
        env,
        tmp_path / f"{name}.log",
        runtimes=RUNTIMES,
        extra_args=("--proxy-address", "127.0.0.7", "--dns-port", "0", "--metrics-listen", ""),
    )


def refused(proc: AgentProcess, timeout: float = 30) -> str:
    """The agent's output once it has exited (it must exit non-zero)."""
    assert proc.proc is not None
    proc.proc.wait(timeout=timeout)
    assert proc.proc.returncode != 0
    text = proc.log.read_text()
    assert "Traceback" not in text
    return text


def server_events(server: ServerProcess, name: str) -> list[dict[str, object]]:
    found = []
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name:
                found.append(entry)
    return found


def nodes(cli: Cli) -> list[str]:
    result = cli.run("get", "nodes", "-o", "name")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def started(server: ServerProcess) -> Iterator[list[AgentProcess]]:
    procs: list[AgentProcess] = []
    yield procs
    for proc in procs:
        proc.stop()
        kill_process_containers(proc.data_dir)


def test_valid_token_joins_and_the_certificate_is_kept(
    server: ServerProcess, cli: Cli, tmp_path: Path, started: list[AgentProcess]
) -> None:
    token = server.create_token()
    proc = agent(server, tmp_path, "joiner", token)
    started.append(proc)
    proc.start()
    wait_until(lambda: nodes(cli) == ["node/joiner"], 30, "the agent registered", proc.log)
    pki = proc.data_dir / "pki"
    assert {f.name: f.stat().st_mode & 0o777 for f in pki.iterdir()} == {
        "ca.crt": 0o600,
        "client.crt": 0o600,
        "client.key": 0o600,
    }
    # Restarted without a token, it uses its saved certificate.
    proc.stop()
    again = agent(server, tmp_path, "joiner", None)
    again.log = tmp_path / "joiner-again.log"
    started.append(again)
    again.start()
    wait_until(lambda: "session_established" in again.log.read_text(), 30, "the restart connected", again.log)
    assert "joining" not in again.log.read_text()


@pytest.mark.parametrize("case", ["wrong", "expired", "revoked"])
def test_bad_tokens_are_refused_on_both_sides(
    server: ServerProcess, cli: Cli, tmp_path: Path, case: str, started: list[AgentProcess]
) -> None:
    token = server.create_token("--ttl", "1s" if case == "expired" else "1h")
    if case == "wrong":
        token = token[:-16] + "0" * 16
    elif case == "expired":
        time.sleep(1.5)
    else:
        token_id = token.split("::")[1].split(".")[0]
        assert cli.run("token", "revoke", token_id).returncode == 0
        listed = cli.run("token", "list").stdout
        assert token_id in listed and "revoked" in listed
    proc = agent(server, tmp_path, f"bad-{case}", token)
    started.append(proc)
    proc.start()
    reason = {"wrong": "wrong secret", "expired": "expired", "revoked": "was revoked"}[case]
    text = refused(proc)
    assert f"refused to let node bad-{case} join" in text and reason in text
    assert any(reason in str(e["reason"]) for e in server_events(server, "join_refused"))
    assert nodes(cli) == []


def test_a_server_presenting_another_ca_gets_nothing(
    server: ServerProcess, cli: Cli, tmp_path: Path, cli_env: dict[str, str], started: list[AgentProcess]
) -> None:
    other_env = {**cli_env, "XDG_CONFIG_HOME": str(tmp_path / "other-config")}
    other = ServerProcess(tmp_path / "other-data", f"127.0.0.1:{free_port()}", other_env, tmp_path / "other.log")
    other.start()
    try:
        token = server.create_token()  # pins the first server's CA
        proc = agent(other, tmp_path, "misdirected", token)
        started.append(proc)
        proc.start()
        text = refused(proc)
        assert "refusing to send credentials" in text
        # The other server never saw a join: the agent stopped before sending anything.
        assert server_events(other, "join_refused") == [] and server_events(other, "joined") == []
        assert nodes(Cli(other.env)) == []
    finally:
        other.stop()


def test_revoking_a_node_cuts_it_off(
    server: ServerProcess, cli: Cli, tmp_path: Path, started: list[AgentProcess]
) -> None:
    proc = agent(server, tmp_path, "revokee", server.create_token())
    started.append(proc)
    proc.start()
    wait_until(lambda: nodes(cli) == ["node/revokee"], 30, "the agent registered", proc.log)
    result = cli.run("node", "revoke", "revokee")
    assert result.returncode == 0, result.stderr
    revoked_at = time.monotonic()
    wait_until(lambda: "revoked" in proc.log.read_text(), 10, "the agent's session refused", proc.log)
    cut_after = time.monotonic() - revoked_at
    closed = server_events(server, "streams_closed")
    assert closed and closed[0]["identity"] == "revokee"
    print(f"\n[security] node revoked: its streams closed, agent refused after {cut_after:.2f} s")
    assert proc.proc is not None and proc.proc.poll() is None  # keeps running its pods, retrying


def test_login_gives_another_machine_admin_credentials(
    server: ServerProcess, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    laptop = {**cli_env, "XDG_CONFIG_HOME": str(tmp_path / "laptop"), "CORRAL_SERVER": server.address}
    join = f"--join={server.join_address}"
    before = Cli(laptop).run("get", "nodes")
    assert before.returncode == 1 and "no credentials" in before.stderr
    node_token = server.create_token()
    wrong_role = Cli(laptop).run("login", "--token", node_token, join)
    assert wrong_role.returncode == 1 and "role node, not admin" in wrong_role.stderr
    result = Cli(laptop).run("login", "--token", server.create_token("--role", "admin"), join, "--user", "ops")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "laptop" / "corral" / "config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert Cli(laptop).run("get", "nodes").returncode == 0
    garbage = Cli(laptop).run("login", "--token", "nonsense", join)
    assert garbage.returncode == 2 and "K10<64 hex digits>" in garbage.stderr


def test_the_admin_credential_written_by_the_server_is_private(server: ServerProcess) -> None:
    config = Path(server.env["XDG_CONFIG_HOME"]) / "corral" / "config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert (server.data_dir / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
