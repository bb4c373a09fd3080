"""Rate limits: our limiter never exceeds the weight budget, never waits past a caller's
deadline (it raises ``RateBudgetExhausted`` before anything is sent), and the simulator enforces
Binance's 429 → 418 escalation with Retry-After."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import ManualClock
from core.domain import Asset, WalletKind
from core.errors import RateBudgetExhausted, VenueFatal, VenueUnavailable
from core.venues.factory import DeskVenues
from core.venues.ratelimit import WeightLimiter, budget_family, request_weight
from core.venues.sim.faults import FaultKind

WINDOW_NS = 60_000_000_000


def _max_window_weight(sends: list[tuple[int, int]]) -> int:
    """Largest total weight inside any half-open 60 s window (checked at every send)."""
    worst = 0
    for i, (t_i, _) in enumerate(sends):
        total = sum(w for t, w in sends[: i + 1] if t > t_i - WINDOW_NS)
        worst = max(worst, total)
    return worst


def test_limiter_with_500_request_burst_never_exceeds_budget() -> None:
    clock = ManualClock()
    limiter = WeightLimiter(clock, {"sapi": 12_000})
    sends = []
    for i in range(500):
        weight = (900, 1, 10, 200)[i % 4]
        limiter.acquire("sapi", weight)
        sends.append((clock.timestamp_ns(), weight))
    assert _max_window_weight(sends) <= 12_000
    total = sum(w for _, w in sends)
    # The burst had to be spread over at least total/limit windows.
    assert clock.timestamp_ns() - sends[0][0] >= (total // 12_000 - 1) * WINDOW_NS
    assert limiter.waited_s > 0


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=500),
    gaps_ms=st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=500),
    limit=st.integers(min_value=900, max_value=6000),
)
def test_limiter_with_random_bursts_never_exceeds_budget(
    weights: list[int], gaps_ms: list[int], limit: int
) -> None:
    clock = ManualClock()
    limiter = WeightLimiter(clock, {"fapi": limit})
    sends = []
    for i, w in enumerate(weights):
        clock.advance(gaps_ms[i % len(gaps_ms)] / 1000)
        limiter.acquire("fapi", w)
        sends.append((clock.timestamp_ns(), w))
        assert limiter.used("fapi") <= limit
    assert _max_window_weight(sends) <= limit


def test_limiter_with_pause_waits_until_retry_after() -> None:
    clock = ManualClock()
    limiter = WeightLimiter(clock, {"api": 6000})
    limiter.pause("api", 30)
    assert limiter.acquire("api", 1) == 30.0
    assert limiter.acquire("other-family", 10**6) == 0.0  # unlimited family


def test_adapter_with_500_transfer_burst_stays_under_sim_limit_and_is_never_throttled(
    sims: DeskVenues, clock: ManualClock
) -> None:
    """500 writes of weight 900 against Binance's 180,000/min UID budget: the adapter paces itself.

    Transfers are "Weight(UID)" on Binance: they must not spend (or be throttled by) the far
    smaller per-IP sapi budget.
    """
    venue = sims.venues["sim-b"]
    dialect = sims.dialects["sim-b"]
    for i in range(500):
        venue.transfer(
            Asset("USDT"),
            Decimal(1),
            WalletKind.SPOT,
            WalletKind.UM,
            f"burst-{i}",
            ts_deadline_ns=None,
        )
        assert dialect.used_weight("sapi-uid") <= 180_000
        assert dialect.used_weight("sapi") <= 6000
    assert len(sims.engines["sim-b"].transfers) == 500
    assert dialect.throttled == 0  # the venue never had to say 429/418
    # 500 × 900 = 450,000 weight at 180,000 per minute needs two full windows of waiting...
    assert clock.timestamp_ns() >= ManualClock().timestamp_ns() + 2 * WINDOW_NS
    # ...and not the 74 minutes it would take if transfers spent the 6,000 IP budget.
    assert clock.timestamp_ns() < ManualClock().timestamp_ns() + 4 * WINDOW_NS


def test_sim_with_ignored_429_escalates_to_418_ban(sims: DeskVenues, clock: ManualClock) -> None:
    dialect = sims.dialects["sim-b"]
    engine = sims.engines["sim-b"]
    limit = engine.config.weight_limits_per_min["sapi-uid"]
    body = ""
    statuses = []
    for _ in range(limit // request_weight("POST", "/sapi/v1/asset/transfer") + 2):
        statuses.append(dialect.handle("POST", "/sapi/v1/asset/transfer", "", body, {}).status)
    assert 429 in statuses
    first_429 = statuses.index(429)
    assert statuses[first_429 + 1] == 418  # hammering through the 429 earns a ban
    banned = dialect.handle("GET", "/api/v3/exchangeInfo", "", "", {})
    assert banned.status == 200  # the ban is per API family
    clock.advance(engine.config.ban_s + 61)
    assert dialect.handle("POST", "/sapi/v1/asset/transfer", "", "", {}).status == 401  # unsigned


def test_sim_429_answer_carries_retry_after_and_binance_code(cold_sims: DeskVenues) -> None:
    dialect = cold_sims.dialects["sim-b"]
    limit = cold_sims.engines["sim-b"].config.weight_limits_per_min["api"]
    answer = None
    for _ in range(limit // 20 + 1):
        answer = dialect.handle("GET", "/api/v3/exchangeInfo", "", "", {})
    assert answer is not None
    assert answer.status == 429
    assert answer.body["code"] == -1003
    assert int(answer.headers["Retry-After"]) > 0


def test_adapter_with_other_client_spending_weight_adopts_venue_count(
    sims: DeskVenues, clock: ManualClock
) -> None:
    """Another client on the same budget: the venue's X-SAPI-USED-UID-WEIGHT-1M header wins."""
    venue = sims.venues["sim-b"]
    dialect = sims.dialects["sim-b"]
    others = 180_000 // 900 - 1  # someone else spends all but one transfer of the UID budget
    for _ in range(others):
        dialect.handle("POST", "/sapi/v1/asset/transfer", "", "", {})
    ours_before = venue.limiter.used("sapi-uid")
    venue.transfer(
        Asset("USDT"), Decimal(1), WalletKind.SPOT, WalletKind.UM, "shared-1", ts_deadline_ns=None
    )
    assert (
        venue.limiter.used("sapi-uid")
        == dialect.used_weight("sapi-uid")
        == ours_before + others * 900 + 900
        == 180_000
    )
    # The next transfer now has to wait for the window instead of drawing a 429.
    t0 = clock.timestamp_ns()
    venue.transfer(
        Asset("USDT"), Decimal(1), WalletKind.SPOT, WalletKind.UM, "shared-2", ts_deadline_ns=None
    )
    assert clock.timestamp_ns() > t0
    assert dialect.throttled == 0


def test_limiter_with_request_heavier_than_budget_raises_venue_fatal() -> None:
    limiter = WeightLimiter(ManualClock(), {"sapi": 500})
    with pytest.raises(VenueFatal, match="weighs more than the whole budget"):
        limiter.acquire("sapi", 900)


def test_transfers_spend_the_uid_budget_and_reads_the_ip_budget() -> None:
    assert budget_family("POST", "/sapi/v1/asset/transfer") == "sapi-uid"
    assert budget_family("POST", "/sapi/v1/capital/withdraw/apply") == "sapi-uid"
    assert budget_family("GET", "/sapi/v1/asset/transfer") == "sapi"
    assert budget_family("GET", "/fapi/v3/account") == "fapi"


def test_limiter_with_deadline_before_the_window_frees_raises_without_recording() -> None:
    clock = ManualClock()
    limiter = WeightLimiter(clock, {"sapi-uid": 1800}, venue="sim-x")
    limiter.acquire("sapi-uid", 900)
    clock.advance(10)
    limiter.acquire("sapi-uid", 900)
    clock.advance(5)  # t = 15 s: the budget is full until the first send leaves at t = 60 s
    with pytest.raises(RateBudgetExhausted) as info:
        limiter.acquire("sapi-uid", 900, ts_deadline_ns=clock.timestamp_ns() + 44_999_999_999)
    assert info.value.retry_after_s == 45.0
    assert info.value.context["venue"] == "sim-x"
    assert info.value.context["family"] == "sapi-uid"
    assert limiter.used("sapi-uid") == 1800  # nothing recorded
    assert clock.timestamp_ns() == ManualClock().timestamp_ns() + 15_000_000_000  # no wait
    # A deadline the window meets is waited for, exactly to the first send's expiry.
    assert (
        limiter.acquire("sapi-uid", 900, ts_deadline_ns=clock.timestamp_ns() + 45 * 10**9) == 45.0
    )


def test_limiter_with_deadline_inside_a_retry_after_pause_raises() -> None:
    clock = ManualClock()
    limiter = WeightLimiter(clock, {"api": 6000})
    limiter.pause("api", 30)
    with pytest.raises(RateBudgetExhausted) as info:
        limiter.acquire("api", 1, ts_deadline_ns=clock.timestamp_ns() + 10 * 10**9)
    assert info.value.retry_after_s == 30.0
    assert limiter.used("api") == 0


@given(
    weights=st.lists(st.integers(1, 900), min_size=1, max_size=60),
    gaps_ms=st.lists(st.integers(0, 5000), min_size=60, max_size=60),
    deadline_ms=st.integers(0, 90_000),
)
@settings(max_examples=60, deadline=None)
def test_limiter_with_any_deadline_never_waits_past_it(
    weights: list[int], gaps_ms: list[int], deadline_ms: int
) -> None:
    """Whatever the history, ``acquire`` either returns by the deadline or raises at once, and
    ``retry_after_s`` is exactly when the request would have fitted."""
    clock = ManualClock()
    limiter = WeightLimiter(clock, {"sapi": 1800})
    for w, gap in zip(weights, gaps_ms, strict=False):
        clock.advance(gap / 1000)
        start = clock.timestamp_ns()
        deadline = start + deadline_ms * 1_000_000
        ready = limiter.ready_at_ns("sapi", w)
        if ready > deadline:
            with pytest.raises(RateBudgetExhausted) as info:
                limiter.acquire("sapi", w, ts_deadline_ns=deadline)
            assert clock.timestamp_ns() == start
            assert info.value.retry_after_s == (ready - start) / 1e9
        else:
            limiter.acquire("sapi", w, ts_deadline_ns=deadline)
            assert clock.timestamp_ns() == ready <= deadline


def test_transfer_past_the_uid_budget_with_a_deadline_is_refused_before_sending(
    sims: DeskVenues, clock: ManualClock
) -> None:
    """The 201st 900-weight transfer in a minute: with a 5 s deadline it is not sent (no 60 s
    wait inside ``transfer``); the error says when the budget frees, and the key stays free."""
    venue, dialect, engine = sims.venues["sim-b"], sims.dialects["sim-b"], sims.engines["sim-b"]
    for _ in range(180_000 // 900 - 1):  # another client spends all but one transfer
        dialect.handle("POST", "/sapi/v1/asset/transfer", "", "", {})
    venue.transfer(
        Asset("USDT"), Decimal(1), WalletKind.SPOT, WalletKind.UM, "t-200", ts_deadline_ns=None
    )
    posts, t0 = dialect.request_log.count(("POST", "/sapi/v1/asset/transfer")), clock.timestamp_ns()
    with pytest.raises(RateBudgetExhausted) as info:
        venue.transfer(
            Asset("USDT"),
            Decimal(1),
            WalletKind.SPOT,
            WalletKind.UM,
            "t-201",
            ts_deadline_ns=t0 + 5 * 10**9,
        )
    assert info.value.retry_after_s == 60.0  # the adopted venue count leaves the window then
    assert info.value.context["op"] == "transfer"
    assert info.value.context["key"] == "t-201"
    assert dialect.request_log.count(("POST", "/sapi/v1/asset/transfer")) == posts
    assert clock.timestamp_ns() == t0
    assert len(engine.transfers) == 1
    clock.advance(info.value.retry_after_s)
    receipt = venue.transfer(
        Asset("USDT"),
        Decimal(1),
        WalletKind.SPOT,
        WalletKind.UM,
        "t-201",
        ts_deadline_ns=clock.timestamp_ns(),
    )
    assert receipt.key == "t-201"
    assert dialect.throttled == 0


def test_read_with_deadline_shorter_than_backoff_raises_after_one_attempt(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue, dialect = sims.venues["sim-a"], sims.dialects["sim-a"]
    sims.engines["sim-a"].faults.inject(FaultKind.SERVER_ERROR, "/api/v3/account", times=3)
    t0 = clock.timestamp_ns()
    with pytest.raises(VenueUnavailable):
        venue.balances(WalletKind.SPOT, ts_deadline_ns=t0 + 200_000_000)  # backoff is 0.5 s
    assert dialect.request_log.count(("GET", "/api/v3/account")) == 1
    assert clock.timestamp_ns() == t0


class _TickingClock(ManualClock):
    """A running clock: every reading is 1 µs after the previous one (a wall clock, in short)."""

    def timestamp_ns(self) -> int:
        self.advance(1e-6)
        return super().timestamp_ns()

    def sleep(self, seconds: float) -> None:
        raise AssertionError(f"the limiter slept {seconds} s with room in the window")


def test_limiter_on_a_running_clock_grants_room_without_waiting() -> None:
    # Regression: acquire compared its own clock reading with a second one taken inside
    # ready_at_ns; on a clock that moves between readings "ready" was always a little later
    # than "now", and the first request of warm_up slept forever in tiny steps.
    clock = _TickingClock()
    limiter = WeightLimiter(clock, {"api": 6_000})
    start = clock.timestamp_ns()
    waits = [limiter.acquire("api", 1) for _ in range(3)]
    assert all(w < 1e-5 for w in waits)  # the clock's own reading steps, no sleep
    assert clock.timestamp_ns() - start < 1_000_000
    assert limiter.used("api") == 3
