"""corral's processes spawn children on uvloop (a real fork()) while gRPC calls are in flight.

gRPC's fork handlers corrupt its polling state then (calls that never finish,
grpc/grpc#37259); importing ``corral`` switches them off. Each case runs a small
program in a fresh interpreter: an aio server and client with calls in flight
while the uvloop loop spawns `true` again and again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import corral  # first: before grpc
    import asyncio, sys
    import grpc, uvloop

    async def main():
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        async def echo(request, context):
            await asyncio.sleep(0.001)
            return request
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "t.T", {"E": grpc.unary_unary_rpc_method_handler(echo)}),))
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/t.T/E")
            done = asyncio.Event()
            answered = 0
            async def pound():
                nonlocal answered
                while not done.is_set():
                    await call(b"x", timeout=10)
                    answered += 1
            callers = [asyncio.create_task(pound()) for _ in range(4)]
            for _ in range(200):
                process = await asyncio.create_subprocess_exec("true")
                await asyncio.wait_for(process.wait(), 10)
            done.set()
            await asyncio.gather(*callers)
        await server.stop(0)
        print("answered", answered)

    uvloop.run(main())
""")


def _run(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"} | env_extra
    try:
        return subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=120, check=False
        )
    except subprocess.TimeoutExpired as e:  # hung: what it printed so far
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return subprocess.CompletedProcess(e.cmd, -9, "", stderr + "\n(timed out)")


def test_importing_corral_switches_off_grpc_fork_handlers() -> None:
    result = _run({})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "answered" in result.stdout
    assert "fork() handlers" not in result.stderr


def test_the_check_sees_grpc_fork_handlers_when_they_are_on() -> None:
    # An explicit setting wins over corral's default: the handlers run, and say so on every fork with calls in flight.
    result = _run({"GRPC_ENABLE_FORK_SUPPORT": "1"})
    assert "skipping fork() handlers" in result.stderr
