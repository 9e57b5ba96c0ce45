"""The leader's lease clock (pure): when to renew, when to give up."""

from __future__ import annotations

import pytest

from controlplane.leader.elector import earlier_incarnation, holder_for
from controlplane.leader.lease import LeaseClock

TTL = 9.0


def test_a_granted_lease_is_valid_for_its_ttl_from_the_request() -> None:
    lease = LeaseClock.granted(TTL, sent_at=100.0)

    assert lease.valid_until == 109.0
    assert lease.next_renewal == 103.0
    assert lease.wait(100.0) == 3.0
    assert not lease.expired(108.99)
    assert lease.expired(109.0)


@pytest.mark.parametrize(
    ("sent_at", "granted", "valid_until", "next_renewal"),
    [
        pytest.param(103.0, 9.0, 112.0, 106.0, id="on-time"),
        # Early renewal: validity counts from the send, whenever the reply came.
        pytest.param(101.0, 9.0, 110.0, 104.0, id="early-renewal"),
        # etcd granted less than asked (it may round): believe etcd.
        pytest.param(103.0, 5.0, 109.0, 106.0, id="shorter-ttl-never-shrinks-validity"),
        pytest.param(107.0, 5.0, 112.0, 110.0, id="shorter-ttl-later"),
    ],
)
def test_a_renewal_extends_validity_from_its_send_time(
    sent_at: float, granted: float, valid_until: float, next_renewal: float
) -> None:
    lease = LeaseClock.granted(TTL, sent_at=100.0).renewed(sent_at=sent_at, ttl=granted)

    assert (lease.valid_until, lease.next_renewal) == (valid_until, next_renewal)


def test_failed_renewals_retry_often_but_never_past_validity() -> None:
    lease = LeaseClock.granted(TTL, sent_at=100.0)

    lease = lease.failed(now=103.0)
    assert lease.next_renewal == pytest.approx(103.9)
    lease = lease.failed(now=108.5)
    assert lease.next_renewal == 109.0  # the last chance is the moment it may be gone
    assert lease.expired(lease.next_renewal)


def test_a_paused_leader_learns_on_waking_that_its_lease_may_be_gone() -> None:
    """SIGSTOP for longer than the ttl: the first look at the clock says stop."""
    lease = LeaseClock.granted(TTL, sent_at=100.0).renewed(sent_at=103.0, ttl=TTL)

    woke = 103.0 + 60.0
    assert lease.wait(woke) == 0.0
    assert lease.expired(woke)


def test_a_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LeaseClock.granted(0, sent_at=0.0)


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        pytest.param("box:99:10.0.0.1:7443", True, id="same-replica-restarted"),
        pytest.param("box:42:10.0.0.1:7443", False, id="myself"),
        pytest.param("box:99:10.0.0.1:7444", False, id="other-replica-same-host"),
        pytest.param("other:99:10.0.0.1:7443", False, id="other-host"),
        pytest.param("garbage", False, id="not-a-holder"),
    ],
)
def test_an_earlier_incarnation_is_the_same_host_and_address_in_another_process(theirs: str, expected: bool) -> None:
    mine = holder_for("box", 42, "10.0.0.1:7443")

    assert mine == "box:42:10.0.0.1:7443"
    assert earlier_incarnation(mine, theirs) is expected
