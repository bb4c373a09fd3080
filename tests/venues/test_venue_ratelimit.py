"""Rate limits: our limiter never exceeds the weight budget, and the simulator enforces Binance's
429 → 418 escalation with Retry-After."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import ManualClock
from core.domain import Asset, WalletKind
from core.errors import VenueFatal
from core.venues.factory import DeskVenues
from core.venues.ratelimit import WeightLimiter, budget_family, request_weight

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
    venue.load_markets()
    for i in range(500):
        venue.transfer(Asset("USDT"), Decimal(1), WalletKind.SPOT, WalletKind.UM, f"burst-{i}")
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


def test_sim_429_answer_carries_retry_after_and_binance_code(sims: DeskVenues) -> None:
    dialect = sims.dialects["sim-b"]
    limit = sims.engines["sim-b"].config.weight_limits_per_min["api"]
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
    venue.load_markets()
    others = 180_000 // 900 - 1  # someone else spends all but one transfer of the UID budget
    for _ in range(others):
        dialect.handle("POST", "/sapi/v1/asset/transfer", "", "", {})
    ours_before = venue.limiter.used("sapi-uid")
    venue.transfer(Asset("USDT"), Decimal(1), WalletKind.SPOT, WalletKind.UM, "shared-1")
    assert (
        venue.limiter.used("sapi-uid")
        == dialect.used_weight("sapi-uid")
        == ours_before + others * 900 + 900
        == 180_000
    )
    # The next transfer now has to wait for the window instead of drawing a 429.
    t0 = clock.timestamp_ns()
    venue.transfer(Asset("USDT"), Decimal(1), WalletKind.SPOT, WalletKind.UM, "shared-2")
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
