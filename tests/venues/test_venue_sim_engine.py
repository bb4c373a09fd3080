"""The simulated exchange's own rules: seeded prices, scenarios, convert book, withdrawals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import Asset, WalletKind
from core.errors import VenueRejected
from core.venues.factory import DeskVenues, sim_exchange_from_desk
from core.venues.sim.engine import SimError
from core.venues.sim.prices import PATH_BLOCK_STEPS, PricePath

START = 1_767_225_600_000_000_000


def _path(seed: int) -> PricePath:
    return PricePath(
        {"BTC": Decimal(95_000), "USDT": Decimal(1)},
        seed=seed,
        vol_annual_frac=0.6,
        stable_assets=frozenset({"USDT"}),
        start_ns=START,
    )


def test_price_path_with_same_seed_is_identical_and_other_seed_differs() -> None:
    a, b, c = _path(11), _path(11), _path(12)
    at = [START + k * 37_000_000_000 for k in range(50)]
    assert [a.price_usd("BTC", t) for t in at] == [b.price_usd("BTC", t) for t in at]
    assert [a.price_usd("BTC", t) for t in at] != [c.price_usd("BTC", t) for t in at]
    assert a.price_usd("BTC", START) == (Decimal(95_000), START)
    assert {a.price_usd("USDT", t)[0] for t in at} == {Decimal(1)}


def _oracle_prices(seed: int, steps: list[int]) -> list[Decimal]:
    """From scratch: the whole path as one array, as the simulator drew it before blocks."""
    import math
    import zlib

    import numpy as np

    z = np.random.default_rng([seed, zlib.crc32(b"BTC")]).standard_normal(max(steps) + 1)
    z[0] = 0.0
    cum = np.cumsum(z)
    s = 0.6 * math.sqrt(1.0 / (365.0 * 24 * 3600))
    return [
        Decimal(repr(round(95_000 * math.exp(s * float(cum[k]) - 0.5 * s * s * k), 10)))
        for k in steps
    ]


def test_price_path_in_blocks_with_any_order_of_reads_equals_the_whole_path() -> None:
    b = PATH_BLOCK_STEPS
    steps = [0, 1, b - 1, b, b + 1, 5 * b + 7, 3, 2 * b - 1, 2 * b, 9 * b, 4 * b + 100, 9 * b + 1]
    p = _path(5)
    got = [p.price_usd("BTC", START + k * 1_000_000_000 + 999)[0] for k in steps]
    assert got == _oracle_prices(5, steps)


def test_price_path_with_a_month_of_steps_keeps_memory_bounded() -> None:
    import tracemalloc

    p = _path(9)
    p.price_usd("BTC", START)
    month_s = 30 * 24 * 3600
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for day in range(1, 31):
            p.price_usd("BTC", START + day * 86_400 * 1_000_000_000)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The whole path as one array was 8 bytes a step: 20.7 MB for a month. Blocks keep one
    # block (32 KiB) and a checkpoint per block reached (633 of them, ~0.7 KB each).
    assert month_s * 8 > 20_000_000
    assert kept < 1_000_000, kept


def test_price_path_with_one_day_has_plausible_spread() -> None:
    p = _path(3)
    prices = [float(p.price_usd("BTC", START + k * 3_600_000_000_000)[0]) for k in range(25)]
    # 60 % annual vol → ~3.1 % daily sd: a day's range stays within ±20 % with certainty here.
    assert all(0.8 * 95_000 < x < 1.2 * 95_000 for x in prices)
    assert len(set(prices)) == 25


def test_price_path_with_scenario_and_freeze_applies_shock_and_staleness() -> None:
    p = _path(1)
    t = START + 600_000_000_000
    base, _ = p.price_usd("BTC", t)
    p.apply_scenario({"BTC": -0.30})
    shocked, _ = p.price_usd("BTC", t)
    assert abs(shocked / base - Decimal("0.7")) < Decimal("1e-9")
    p.freeze("BTC", t)
    later, at = p.price_usd("BTC", t + 3_600_000_000_000)
    assert (later, at) == (shocked, t)
    with pytest.raises(ValueError, match="must be > -1"):
        p.apply_scenario({"BTC": -1.0})


def test_convert_with_book_levels_costs_more_per_unit_as_size_grows(sims: DeskVenues) -> None:
    venue = sims.venues["sim-a"]
    small = venue.convert_quote(Asset("USDC"), Asset("USDT"), Decimal(1_000_000))
    large = venue.convert_quote(Asset("USDC"), Asset("USDT"), Decimal(4_000_000))
    assert small.ratio > large.ratio
    # Desk book a.spot.usdc-usdt: 2M at 1 bp, 3M at 4 bp; USDC at 0.9998.
    value = Decimal(4_000_000) * Decimal("0.9998")
    expected = Decimal(2_000_000) * Decimal("0.9999") + (value - 2_000_000) * Decimal("0.9996")
    assert large.to_amount == expected.quantize(Decimal("1e-8"))


def test_convert_accept_with_expired_quote_is_rejected(
    sims: DeskVenues, clock: ManualClock
) -> None:
    venue = sims.venues["sim-a"]
    quote = venue.convert_quote(Asset("USDC"), Asset("USDT"), Decimal(1000))
    clock.advance(11)
    with pytest.raises(VenueRejected, match="-345239"):
        venue.accept_quote(quote, ts_deadline_ns=None)


def test_convert_accept_moves_both_assets(sims: DeskVenues) -> None:
    venue = sims.venues["sim-a"]
    engine = sims.engines["sim-a"]
    spot = engine.wallets[WalletKind.SPOT]
    usdc0, usdt0 = spot["USDC"].free, spot["USDT"].free
    quote = venue.convert_quote(Asset("USDC"), Asset("USDT"), Decimal(1000))
    result = venue.accept_quote(quote, ts_deadline_ns=None)
    assert result.status == "SUCCESS"
    assert spot["USDC"].free == usdc0 - 1000
    assert spot["USDT"].free == usdt0 + quote.to_amount


def test_withdrawal_with_latency_credits_other_venue_only_after_latency(
    sims: DeskVenues, clock: ManualClock
) -> None:
    a, b = sims.venues["sim-a"], sims.venues["sim-b"]
    address = b.deposit_address(Asset("USDT"), "TRX")
    t0 = clock.now()
    receipt = a.withdraw(
        Asset("USDT"), Decimal(100_000), address, "TRX", "wd-1", ts_deadline_ns=None
    )
    assert receipt.amount == Decimal(100_000)
    assert b.deposits(Asset("USDT"), t0) == ()
    clock.advance(1199)
    assert b.deposits(Asset("USDT"), t0) == ()
    clock.advance(1)
    (dep,) = b.deposits(Asset("USDT"), t0)
    assert (dep.amount, dep.credited) == (Decimal(99_999), True)
    spot_b = {x.asset.code: x.amount for x in b.balances(WalletKind.SPOT)}
    assert spot_b["USDT"] == Decimal(1_600_000 + 99_999)


def test_withdrawal_with_same_client_id_is_applied_once(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    engine = sims.engines["sim-a"]
    first = a.withdraw(
        Asset("USDT"), Decimal(20_000), "0x" + "cd" * 20, "TRX", "wd-same", ts_deadline_ns=None
    )
    second = engine.withdraw("USDT", "20000", "0x" + "cd" * 20, "TRX", "wd-same")
    assert second.id == first.withdrawal_id
    assert len(engine.withdrawals) == 1


@settings(max_examples=60, deadline=None)
@given(
    amount=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(1000), places=12),
)
def test_engine_transfer_with_any_amount_conserves_total_or_refuses_precision(
    desk: DeskConfig, amount: Decimal
) -> None:
    clock = ManualClock()
    engine, _ = sim_exchange_from_desk(desk, "sim-a", clock)
    total0 = sum(line.total for book in engine.wallets.values() for line in book.values())
    if amount != amount.quantize(Decimal("1e-8")):
        with pytest.raises(SimError, match="-1111"):
            engine.transfer("MAIN_MARGIN", "USDT", str(amount))
        return
    engine.transfer("MAIN_MARGIN", "USDT", str(amount))
    clock.advance(1)
    engine.settle()
    total1 = sum(line.total for book in engine.wallets.values() for line in book.values())
    assert total1 == total0


def test_sim_from_desk_with_options_positions_holds_them_and_skips_nothing(
    desk: DeskConfig,
) -> None:
    engine, skipped = sim_exchange_from_desk(desk, "sim-b", ManualClock())
    assert skipped == []
    assert {s: (p.qty, p.entry_price) for s, p in engine.option_book.positions.items()} == {
        "BTC-270326-100000-C": (Decimal(-60), Decimal(7400)),
        "BTC-270326-80000-P": (Decimal(-80), Decimal(3900)),
        "ETH-270625-3500-C": (Decimal(900), Decimal(240)),
    }
    assert not engine.config.portfolio_margin
    engine_a, _ = sim_exchange_from_desk(desk, "sim-a", ManualClock())
    assert engine_a.config.portfolio_margin
    assert engine_a.option_book.positions == {}  # listed on both venues, held on sim-b only


def test_sim_from_desk_with_frozen_prices_keeps_desk_marks_at_any_time(desk: DeskConfig) -> None:
    clock = ManualClock()
    frozen, _ = sim_exchange_from_desk(desk, "sim-a", clock, frozen_prices=True)
    moving, _ = sim_exchange_from_desk(desk, "sim-a", clock)
    clock.advance(86_400)  # a day of the seeded walk
    assert frozen.mark("BTCUSDT")[:2] == (Decimal("95040.00000000"), Decimal("95000.00000000"))
    assert frozen.asset_price_usd("DOGE")[0] == Decimal("0.25")
    assert moving.mark("BTCUSDT")[0] != Decimal("95040")  # the path mode does move
