"""The one duration format (protos/durations.py): every reader of a duration agrees."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from corral.cli.params import Duration, WholeDuration
from protos import durations
from protos.corral.v1 import meta_pb2, workloads_pb2
from protos.durations import MAX_SECONDS, DurationError, parse_seconds, parse_whole_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90", 90, id="bare-number"),
        pytest.param("0", 0, id="zero"),
        pytest.param("1.5", 1.5, id="bare-fraction"),
        pytest.param("60s", 60, id="seconds"),
        pytest.param("5m", 300, id="minutes"),
        pytest.param("1h", 3600, id="hours"),
        pytest.param("7d", 7 * 86400, id="days"),
        pytest.param("1m30s", 90, id="compound"),
        pytest.param("1h30m", 5400, id="compound-hours"),
        pytest.param("1d2h3m4s", 93784, id="every-unit"),
        pytest.param("30s1m", 90, id="any-order"),
        pytest.param("500ms", 0.5, id="millis"),
        pytest.param("1.5h", 5400, id="fraction-of-a-unit"),
        pytest.param(" 5m ", 300, id="blanks-around"),
        pytest.param(str(MAX_SECONDS), MAX_SECONDS, id="longest"),
    ],
)
def test_parse_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("", "must be a number of seconds or a duration", id="empty"),
        pytest.param("soon", "must be a number of seconds or a duration", id="word"),
        pytest.param("5x", "must be a number of seconds or a duration", id="unknown-unit"),
        pytest.param("1m-3s", "must be a number of seconds or a duration", id="negative-part"),
        pytest.param("-5s", "must be a number of seconds or a duration", id="negative"),
        pytest.param("-5", "must be a number of seconds or a duration", id="negative-number"),
        pytest.param("1 m", "must be a number of seconds or a duration", id="blank-inside"),
        pytest.param("1e3", "must be a number of seconds or a duration", id="exponent"),
        pytest.param("inf", "must be a number of seconds or a duration", id="infinity"),
        pytest.param("m", "must be a number of seconds or a duration", id="unit-alone"),
        pytest.param("\u0663s", "must be a number of seconds or a duration", id="non-ascii-digit"),
        pytest.param("99999999999999h", f"must be at most {MAX_SECONDS} seconds", id="too-long"),
        pytest.param(str(MAX_SECONDS + 1), f"must be at most {MAX_SECONDS} seconds", id="one-over"),
    ],
)
def test_parse_seconds_refuses(text: str, problem: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_seconds(text)
    assert caught.value.problem.startswith(problem)
    assert f'got "{text}"' in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("1.5m", 90, id="fraction-of-a-unit-that-is-whole"),
        pytest.param("2000ms", 2, id="whole-millis"),
        pytest.param("1.1h", 3960, id="exact-decimal"),
        pytest.param("0", 0, id="zero-never"),
    ],
)
def test_parse_whole_seconds(text: str, seconds: int) -> None:
    assert parse_whole_seconds(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("500ms", id="millis"),
        pytest.param("1.5", id="bare-fraction"),
        pytest.param("1500ms", id="over-a-second"),
    ],
)
def test_parse_whole_seconds_refuses_fractions(text: str) -> None:
    with pytest.raises(DurationError, match="whole number of seconds"):
        parse_whole_seconds(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(meta_pb2.IntOrString(int_val=60), 60, id="int"),
        pytest.param(meta_pb2.IntOrString(int_val=0), 0, id="zero"),
        pytest.param(meta_pb2.IntOrString(str_val="60s"), 60, id="seconds"),
        pytest.param(meta_pb2.IntOrString(str_val="5m"), 300, id="minutes"),
        pytest.param(meta_pb2.IntOrString(str_val="1h"), 3600, id="hours"),
        pytest.param(meta_pb2.IntOrString(str_val="1h30m"), 5400, id="compound"),
        pytest.param(meta_pb2.IntOrString(str_val="60"), 60, id="string-without-unit"),
        pytest.param(meta_pb2.IntOrString(str_val="7d"), 7 * 86400, id="days"),
        pytest.param(meta_pb2.IntOrString(str_val="500ms"), None, id="fraction-refused"),
        pytest.param(meta_pb2.IntOrString(str_val="-5s"), None, id="negative-string"),
        pytest.param(meta_pb2.IntOrString(int_val=-1), None, id="negative-int"),
        pytest.param(meta_pb2.IntOrString(), None, id="unset"),
    ],
)
def test_pause_durations(value: meta_pb2.IntOrString, seconds: int | None) -> None:
    assert durations.seconds(value) == seconds
    if value.WhichOneof("value") is not None:
        assert (durations.duration_problem(value) is None) == (seconds is not None)


def test_a_pause_without_duration_lasts_until_promoted() -> None:
    assert durations.pause_seconds(workloads_pb2.CanaryPause()) is None
    assert durations.describe(workloads_pb2.CanaryPause()) == "until promoted"
    assert durations.describe(workloads_pb2.CanaryPause(duration=meta_pb2.IntOrString(str_val="1m30s"))) == "for 90s"


@pytest.mark.parametrize("text", ["90", "1m30s", "7d", "1h30m", "1.5m"])
def test_every_reader_agrees(text: str) -> None:
    """A canary pause, a TTL flag and a --timeout flag read the same text as the same seconds."""
    pause = workloads_pb2.CanaryPause(duration=meta_pb2.IntOrString(str_val=text))
    seen: dict[str, object] = {}

    @click.command()
    @click.option("--ttl", type=WholeDuration())
    @click.option("--timeout", type=Duration())
    def cmd(ttl: int, timeout: float) -> None:
        seen.update(ttl=ttl, timeout=timeout)

    result = CliRunner().invoke(cmd, ["--ttl", text, "--timeout", text])
    assert result.exit_code == 0, result.output
    assert seen["ttl"] == seen["timeout"] == durations.pause_seconds(pause) == parse_seconds(text)


@pytest.mark.parametrize(
    ("param", "text", "message"),
    [
        pytest.param(WholeDuration(), "500ms", 'must be a whole number of seconds, got "500ms"', id="ttl-fraction"),
        pytest.param(Duration(), "soon", 'got "soon"', id="timeout-word"),
        pytest.param(Duration(), "-1s", 'got "-1s"', id="timeout-negative"),
    ],
)
def test_flags_refuse_with_the_text(param: click.ParamType[object, object], text: str, message: str) -> None:
    @click.command()
    @click.option("--value", type=param)
    def cmd(value: object) -> None:
        raise AssertionError("not reached")

    result = CliRunner().invoke(cmd, ["--value", text])
    assert result.exit_code == 2
    assert "--value" in result.output and message in result.output
