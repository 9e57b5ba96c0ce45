"""Security settings and volumes on the Docker and process runtimes.

Docker honours runAsUser, readOnlyRootFilesystem, capabilities, mounts and
runAsNonRoot, and never mounts its own socket; the process runtime honours
runAsUser (the agent runs as root here) and refuses what it cannot isolate
with a `ContainerConfigError` instead of ignoring it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.runtime.base import ContainerRuntime, Mount
from agent.runtime.errors import ContainerConfigError
from agent.runtime.process import ProcessRuntime
from tests.contract.test_runtime import TEST_LABEL, Target, connect_docker, read_logs, wait_until_exited


@pytest.fixture
async def docker_target() -> AsyncIterator[Target]:
    runtime = await connect_docker()
    target = Target("docker", runtime, uuid.uuid4().hex[:12])
    try:
        yield target
    finally:
        for info in await runtime.list({TEST_LABEL: target.test_id}):
            await runtime.remove(info.id)
        await runtime.close()


@pytest.fixture
async def process_target(tmp_path: Path) -> AsyncIterator[Target]:
    runtime: ContainerRuntime = ProcessRuntime(tmp_path / "process-runtime")
    target = Target("process", runtime, uuid.uuid4().hex[:12])
    try:
        yield target
    finally:
        for info in await runtime.list({TEST_LABEL: target.test_id}):
            await runtime.remove(info.id)
        await runtime.close()


async def output_of(target: Target, script: str, **fields: object) -> tuple[int | None, str]:
    """Run `script` to its end; its exit code and output."""
    shell = ["sh", "-c", script] if target.kind == "docker" else ["/bin/sh", "-c", script]
    info = await target.runtime.run(target.spec(f"s{uuid.uuid4().hex[:6]}", command=shell, **fields))
    exited = await wait_until_exited(target, info.id)
    return exited.exit_code, (await read_logs(target.runtime, info.id)).decode()


# -- docker ----------------------------------------------------------------------------


async def test_docker_runs_as_the_user_asked(docker_target: Target) -> None:
    code, output = await output_of(docker_target, "id -u; id -g", user="1000:3000")

    assert code == 0
    assert output.split() == ["1000", "3000"]


async def test_docker_read_only_root_filesystem_refuses_writes(docker_target: Target) -> None:
    code, output = await output_of(docker_target, "touch /written && echo wrote", read_only_rootfs=True)

    assert code != 0
    assert "Read-only file system" in output and "wrote" not in output


async def test_docker_cap_drop_all_takes_every_capability(docker_target: Target) -> None:
    code, output = await output_of(docker_target, "grep CapEff /proc/self/status", cap_drop=["ALL"])
    _, default = await output_of(docker_target, "grep CapEff /proc/self/status")

    assert code == 0
    assert output.split() == ["CapEff:", "0000000000000000"]
    assert default.split()[1] != "0000000000000000"


async def test_docker_default_is_unprivileged_with_no_new_privileges(docker_target: Target) -> None:
    _, output = await output_of(docker_target, "grep NoNewPrivs /proc/self/status")
    _, allowed = await output_of(docker_target, "grep NoNewPrivs /proc/self/status", no_new_privileges=False)

    assert output.split() == ["NoNewPrivs:", "1"]
    assert allowed.split() == ["NoNewPrivs:", "0"]


async def test_docker_containers_share_an_empty_dir_and_see_a_read_only_host_path(
    docker_target: Target, tmp_path: Path
) -> None:
    shared = tmp_path / "empty-dir"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    host = tmp_path / "host"
    host.mkdir()
    (host / "config").write_text("from the host\n")
    mounts = [Mount("/shared", str(shared)), Mount("/etc/app", str(host), read_only=True)]

    code, _ = await output_of(docker_target, "echo hello > /shared/note", mounts=mounts, user="1000")
    reader_code, output = await output_of(
        docker_target, "cat /shared/note /etc/app/config; touch /etc/app/x || echo read-only", mounts=mounts
    )

    assert code == 0 and reader_code == 0
    # stdout and stderr reach the log through two pipes: touch's complaint may come first.
    assert [line for line in output.splitlines() if not line.startswith("touch:")][:2] == ["hello", "from the host"]
    assert "read-only" in output
    assert (shared / "note").read_text() == "hello\n"


async def test_docker_memory_empty_dir_is_a_tmpfs(docker_target: Target) -> None:
    code, output = await output_of(docker_target, "grep ' /cache ' /proc/mounts", mounts=[Mount("/cache", tmpfs=True)])

    assert code == 0
    assert output.startswith("tmpfs /cache tmpfs")


async def test_docker_adds_the_supplementary_groups(docker_target: Target) -> None:
    """fsGroup and supplementalGroups reach the container's first process."""
    code, output = await output_of(docker_target, "id -G", user="1000", group_add=[2000, 3000])

    assert code == 0
    assert output.split() == ["0", "2000", "3000"]


@pytest.mark.parametrize("socket", ["/var/run/docker.sock", "/run/docker.sock"])
async def test_docker_never_mounts_its_socket(docker_target: Target, socket: str) -> None:
    with pytest.raises(ContainerConfigError, match="Docker socket"):
        await docker_target.runtime.run(docker_target.spec("sock", mounts=[Mount("/sock", socket)]))

    assert await docker_target.runtime.list({TEST_LABEL: docker_target.test_id}) == []


@pytest.mark.parametrize("target", ["/run", "/var/run", "/"])
async def test_docker_refuses_a_symlink_to_a_socket_parent(docker_target: Target, tmp_path: Path, target: str) -> None:
    """The API checks hostPath as written: a link on the node to /run is refused here."""
    link = tmp_path / "innocent"
    link.symlink_to(target)

    real = os.path.realpath(target)
    with pytest.raises(ContainerConfigError, match=f"resolves to {real}, which holds a container engine's socket"):
        await docker_target.runtime.run(docker_target.spec("link", mounts=[Mount("/host", str(link))]))

    assert await docker_target.runtime.list({TEST_LABEL: docker_target.test_id}) == []


async def test_docker_run_as_non_root_refuses_a_root_image(docker_target: Target) -> None:
    with pytest.raises(ContainerConfigError, match="runAsNonRoot and image will run as root"):
        await docker_target.runtime.run(docker_target.spec("root", run_as_non_root=True))

    code, output = await output_of(docker_target, "id -u", run_as_non_root=True, user="1000")
    assert (code, output.strip()) == (0, "1000")


@pytest.mark.parametrize(
    ("fields", "namespace"),
    [
        pytest.param({"host_network": True, "dns_servers": ["10.9.9.9"]}, "net", id="host-network"),
        pytest.param({"host_pid": True}, "pid", id="host-pid"),
        pytest.param({"host_ipc": True}, "ipc", id="host-ipc"),
    ],
)
async def test_docker_joins_the_host_namespaces_asked_for(
    docker_target: Target, fields: dict[str, object], namespace: str
) -> None:
    script = f"busybox readlink /proc/self/ns/{namespace}"
    code, shared = await output_of(docker_target, script, **fields)
    _, own = await output_of(docker_target, script)

    assert code == 0
    assert shared.strip() == os.readlink(f"/proc/self/ns/{namespace}")
    assert own.strip() != shared.strip()


# -- process -----------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
async def test_process_runs_as_the_user_asked_when_the_agent_is_root(process_target: Target) -> None:
    code, output = await output_of(process_target, "id -u; id -g; grep NoNewPrivs /proc/self/status", user="1000:3000")

    assert code == 0
    assert output.split() == ["1000", "3000", "NoNewPrivs:", "1"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"mounts": [Mount("/data", "/tmp")]}, "volumes", id="volumes"),
        pytest.param({"read_only_rootfs": True}, "readOnlyRootFilesystem", id="read-only-rootfs"),
        pytest.param({"cap_drop": ["ALL"]}, "capabilities", id="capabilities"),
        pytest.param({"privileged": True}, "privileged", id="privileged"),
        pytest.param({"group_add": [2000]}, "supplementary groups", id="supplementary-groups"),
        pytest.param({"run_as_non_root": True, "user": "0"}, "runAsNonRoot", id="non-root-as-root"),
    ],
)
async def test_process_refuses_what_it_cannot_isolate(
    process_target: Target, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        await process_target.runtime.run(process_target.spec("refused", **fields))

    assert await process_target.runtime.list({TEST_LABEL: process_target.test_id}) == []


async def test_process_refusal_leaves_no_container_directory(process_target: Target) -> None:
    """A refused start leaves no container directory either."""
    runtime = process_target.runtime
    assert isinstance(runtime, ProcessRuntime)
    with pytest.raises(ContainerConfigError):
        await runtime.run(process_target.spec("refused", privileged=True))

    assert await asyncio.to_thread(lambda: list(runtime._root.glob("*")) if runtime._root.exists() else []) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
@pytest.mark.parametrize(
    ("user", "expected"),
    [
        pytest.param("", ["65534", "65534"], id="default-user"),
        pytest.param("1000", ["1000", "0"], id="run-as-user-wins"),
        pytest.param("0:0", ["0", "0"], id="run-as-root-when-asked"),
    ],
)
async def test_process_on_a_root_agent_runs_as_its_default_user_and_so_does_exec(
    tmp_path: Path, user: str, expected: list[str]
) -> None:
    runtime = ProcessRuntime(tmp_path / "process-runtime", default_user="65534:65534")
    target = Target("process", runtime, uuid.uuid4().hex[:12])
    try:
        info = await runtime.run(target.spec("whoami", command=["/bin/sh", "-c", "id -u; id -g; sleep 30"], user=user))
        output = await asyncio.wait_for(_output_until(runtime, info.id, 2), 20)
        result = await runtime.exec(info.id, ["/bin/sh", "-c", "id -u; id -g"], timeout=10)
    finally:
        for listed in await runtime.list({TEST_LABEL: target.test_id}):
            await runtime.stop(listed.id, grace_seconds=1)
            await runtime.remove(listed.id)

    assert output == expected
    assert result.output.decode().split() == expected


async def _output_until(runtime: ProcessRuntime, container_id: str, lines: int) -> list[str]:
    """The container's first `lines` words of output, once written."""
    while len(words := (await read_logs(runtime, container_id)).decode().split()) < lines:
        await asyncio.sleep(0.05)
    return words
