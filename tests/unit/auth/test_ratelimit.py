"""The join port's rate limiter: a token bucket per source address, `now` passed in."""

from __future__ import annotations

import pytest

from controlplane.auth.ratelimit import SourceRateLimiter, peer_address
from corral.common.logs import clip


def allowed(limiter: SourceRateLimiter, source: str, now: float, times: int) -> list[bool]:
    return [limiter.take(source, now=now).allowed for _ in range(times)]


def test_a_burst_then_the_rate() -> None:
    limiter = SourceRateLimiter(rate=2.0, burst=3)
    assert allowed(limiter, "10.0.0.1", 100.0, 4) == [True, True, True, False]
    refused = limiter.take("10.0.0.1", now=100.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(0.5)
    assert allowed(limiter, "10.0.0.1", 100.5, 2) == [True, False]  # one token back after 1/rate
    assert allowed(limiter, "10.0.0.1", 1_000.0, 4) == [True, True, True, False]  # never more than the burst


def test_sources_are_limited_apart() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=1)
    assert allowed(limiter, "10.0.0.1", 0.0, 2) == [True, False]
    assert allowed(limiter, "10.0.0.2", 0.0, 1) == [True]


def test_only_the_first_refusal_in_a_row_is_marked_for_the_log() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=1)
    limiter.take("a", now=0.0)
    assert [limiter.take("a", now=0.0).first_refusal for _ in range(3)] == [True, False, False]
    assert limiter.take("a", now=5.0).allowed
    assert limiter.take("a", now=5.0).first_refusal


def test_the_number_of_sources_tracked_is_bounded() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=1, max_sources=100)
    for i in range(10_000):
        limiter.take(f"10.{i // 256}.{i % 256}.1", now=float(i) / 1000)
    assert len(limiter) == 100


def test_a_clock_going_back_takes_nothing_away() -> None:
    limiter = SourceRateLimiter(rate=1.0, burst=2)
    assert allowed(limiter, "a", 10.0, 1) == [True]
    assert allowed(limiter, "a", 5.0, 2) == [True, False]


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        pytest.param("ipv4:10.0.0.7:51234", "10.0.0.7", id="ipv4"),
        pytest.param("ipv6:[::1]:51234", "::1", id="ipv6"),
        pytest.param("unix:/run/corral.sock", "unix:/run/corral.sock", id="unix"),
    ],
)
def test_peer_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address


@pytest.mark.parametrize(
    ("text", "clipped"),
    [
        pytest.param("n1", "n1", id="short"),
        pytest.param("x" * 10, "xxxx…(+6 chars)", id="long"),
        pytest.param("a\nb", "a\\nb", id="control characters"),
    ],
)
def test_clip(text: str, clipped: str) -> None:
    assert clip(text, 4) == clipped
