"""The injected clock and the error tree behave as the rest of core relies on."""

from __future__ import annotations

import pytest

from core.clock import ManualClock, SystemClock, ns_to_datetime
from core.errors import (
    ConfigError,
    DataError,
    InsufficientFunds,
    OutcomeUnknown,
    PmrError,
    RateLimited,
    StalePriceError,
    TransientVenueError,
    VenueError,
    VenueRejected,
)


def test_manual_clock_sleep_advances_time_without_waiting() -> None:
    clock = ManualClock(start_ns=0)
    clock.sleep(1.25)
    assert clock.timestamp_ns() == 1_250_000_000
    assert clock.now() == ns_to_datetime(1_250_000_000)


def test_manual_clock_with_backward_move_raises() -> None:
    clock = ManualClock(start_ns=10)
    with pytest.raises(ValueError, match="backward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backward"):
        clock.set_ns(5)


def test_system_clock_is_timezone_aware_and_monotone_enough() -> None:
    clock = SystemClock()
    a = clock.timestamp_ns()
    assert clock.now().tzinfo is not None
    assert clock.timestamp_ns() >= a


def test_errors_render_context_sorted_after_the_message() -> None:
    err = InsufficientFunds("not enough USDT", venue="sim-a", asset="USDT", amount="5")
    assert str(err) == "not enough USDT (amount=5, asset=USDT, venue=sim-a)"
    assert err.context["venue"] == "sim-a"


def test_error_tree_is_shaped_by_what_the_caller_must_do() -> None:
    assert issubclass(StalePriceError, DataError)
    assert issubclass(ConfigError, PmrError)
    assert issubclass(OutcomeUnknown, TransientVenueError)
    assert issubclass(RateLimited, TransientVenueError)
    assert issubclass(InsufficientFunds, VenueRejected)
    assert not issubclass(VenueRejected, TransientVenueError)
    assert issubclass(TransientVenueError, VenueError)


def test_rate_limited_carries_retry_after() -> None:
    err = RateLimited("429 from sim-a", retry_after_s=2.5, venue="sim-a")
    assert err.retry_after_s == 2.5
    assert "retry_after_s=2.5" in str(err)
