"""Venue state → margin, end to end on the real simulator: negative futures wallets and hedge mode.

Each test seeds a simulated Binance account from a desk TOML, reads it back through ``CcxtVenue``
(ccxt over the simulator's REST dialect) and the ``parse`` functions, and prices the result
with ``core.margin``; the figures are computed by hand in the comments.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session

from core.clock import ManualClock
from core.config import DeskConfig, parse_desk
from core.domain import MarginModelKind, Pool, Portfolio, PositionSide, WalletKind
from core.ledger.store import ensure_venue, load_snapshot, make_engine, record_snapshot
from core.ledger.tables import LedgerTable
from core.ledger.vocab import SnapshotSource, VenueMode
from core.margin.api import evaluate_pool, evaluate_portfolio, params_for_pool
from core.margin.params import CrashScenario
from core.margin.report import MarginReport, VenueBand
from core.venues.factory import DeskVenues, build_desk_venues
from core.venues.parse import positions_to_domain

D = Decimal
AT = datetime(2026, 11, 27, 12, tzinfo=UTC)
Reader = Callable[[DeskConfig, tuple[WalletKind, ...]], Portfolio]

_HEAD = """
[desk]
name = "state test"
[assets.BTC]
[assets.USDT]
kind = "stablecoin"
[[venues]]
name = "sim-x"
kind = "sim"
[collateral_rates.USDT]
rate = 1
[collateral_rates.BTC]
rate = 0.95
[[instruments]]
symbol = "BTCUSDT"
kind = "linear_perp"
underlying = "BTC"
quote = "USDT"
[[brackets.BTCUSDT]]
floor_usd = 0
mmr = 0.005
[[prices]]
symbol = "USDT"
mark = 1
"""


def _desk(pool: str, btc_usd: int, rows: str) -> DeskConfig:
    prices = f"""
[[prices]]
symbol = "BTC"
mark = {btc_usd}
[[prices]]
symbol = "BTCUSDT"
mark = {btc_usd}
index = {btc_usd}
"""
    return parse_desk(tomllib.loads(_HEAD + pool + prices + rows), source="test")


_PM_POOL = """
[[pools]]
id = "sim-x.pm"
venue = "sim-x"
wallets = ["margin", "um", "cm"]
model = "unified"
"""
_UM_POOL = """
[[pools]]
id = "sim-x.um"
venue = "sim-x"
wallets = ["um"]
model = "standard"
"""


def _row(section: str, **kw: str) -> str:
    body = "\n".join(f'{k} = "{v}"' for k, v in kw.items())
    return f'\n[[{section}]]\nvenue = "sim-x"\n{body}\n'


@pytest.fixture
def read_back() -> Iterator[Reader]:
    """Seed the simulator from a desk, read wallets and UM positions back as a Portfolio."""
    opened: list[DeskVenues] = []

    def read(desk: DeskConfig, wallets: tuple[WalletKind, ...]) -> Portfolio:
        dv = build_desk_venues(desk, ManualClock(int(AT.timestamp()) * 10**9))
        opened.append(dv)
        venue = dv.venues["sim-x"]
        venue.load_markets()
        balances = tuple(b for w in wallets for b in venue.balances(w))
        reports = venue.positions(WalletKind.UM)
        positions = positions_to_domain(reports, desk.instrument_map())
        return Portfolio.of(balances, positions, desk.initial_prices(AT), AT)

    yield read
    for dv in opened:
        dv.close()


def _loans(report: MarginReport) -> list[str]:
    return [c.key for c in report.contributions if c.key.startswith("loan:")]


def test_pm_account_with_negative_um_wallet_lowers_equity_and_carries_no_loan_mm(
    read_back: Reader,
) -> None:
    # Cross margin 10,000 USDT free; UM wallet −8,000 USDT (no margin loan); BTCUSDT long 5 at
    # 60,000 marked 60,000, bracket MMR 0.5 %.
    desk = _desk(
        _PM_POOL,
        60_000,
        _row("balances", wallet="margin", asset="USDT", amount="10000")
        + _row("balances", wallet="um", asset="USDT", amount="-8000")
        + _row("positions", wallet="um", symbol="BTCUSDT", qty="5", entry_price="60000"),
    )
    pf = read_back(desk, (WalletKind.MARGIN, WalletKind.UM))
    um = next(b for b in pf.balances if b.wallet is WalletKind.UM)
    assert (um.amount, um.loan, um.interest) == (D(-8000), 0, 0)
    r = evaluate_pool(desk, "sim-x.pm", pf)
    assert r.adjusted_equity_usd == D(2000)  # 10,000 − 8,000 + PnL 0
    assert r.mm_usd == D(1500)  # 5 × 60,000 × 0.5 %, and no loan MM
    assert r.ratio == D("1.333333333")
    assert r.max_withdraw_usd == D(200)  # 2,000 − 1.2 × 1,500
    assert r.venue_band is VenueBand.MARGIN_CALL  # 1.2 < 1.333 ≤ 1.5, not bankrupt
    assert _loans(r) == []


def test_classic_multi_assets_um_wallet_with_negative_usdt_is_not_a_loan(
    read_back: Reader,
) -> None:
    # Classic USDⓈ-M wallet in multi-assets mode: −8,000 USDT next to 0.2 BTC of collateral
    # (0.2 × 60,000 × 95 % = 11,400); long 5 BTCUSDT at 60,000.
    desk = _desk(
        _UM_POOL,
        60_000,
        _row("balances", wallet="um", asset="USDT", amount="-8000")
        + _row("balances", wallet="um", asset="BTC", amount="0.2")
        + _row("positions", wallet="um", symbol="BTCUSDT", qty="5", entry_price="60000"),
    )
    pf = read_back(desk, (WalletKind.UM,))
    assert {b.asset.code: (b.amount, b.loan) for b in pf.balances} == {
        "USDT": (D(-8000), 0),
        "BTC": (D("0.2"), 0),
    }
    r = evaluate_pool(desk, "sim-x.um", pf)
    assert r.adjusted_equity_usd == D(3400)  # −8,000 at 100 % + 11,400
    assert r.mm_usd == D(1500)
    assert r.ratio == (D(3400) / D(1500)).quantize(D("1e-9"))
    assert _loans(r) == []


def test_hedge_mode_legs_read_from_the_venue_stay_apart_in_store_and_margin(
    read_back: Reader,
) -> None:
    # LONG 0.5 @ 60,000 and SHORT 0.3 @ 62,000, marked 61,000:
    # uPnL 0.5 × 1,000 + (−0.3) × (−1,000) = 800; bracket MM (0.5 + 0.3) × 61,000 × 0.5 % = 244.
    desk = _desk(
        _PM_POOL,
        61_000,
        _row("balances", wallet="margin", asset="USDT", amount="10000")
        + _row("positions", wallet="um", symbol="BTCUSDT", qty="0.5", entry_price="60000",
               side="long")
        + _row("positions", wallet="um", symbol="BTCUSDT", qty="-0.3", entry_price="62000",
               side="short"),
    )  # fmt: skip
    pf = read_back(desk, (WalletKind.MARGIN, WalletKind.UM))
    assert [(p.side, p.qty) for p in pf.positions] == [
        (PositionSide.LONG, D("0.5")),
        (PositionSide.SHORT, D("-0.3")),
    ]
    # the store keeps both legs (its unique key includes the side)
    engine = make_engine("sqlite://")
    LedgerTable.metadata.create_all(engine)
    with Session(engine) as s:
        ensure_venue(s, "sim-x", exchange="sim", mode=VenueMode.SIM, at=AT)
        sid = record_snapshot(
            s, taken_at=AT, source=SnapshotSource.VENUE, venue_id="sim-x",
            balances=pf.balances, positions=pf.positions, prices=pf.prices.values(),
        )  # fmt: skip
        s.commit()
        stored = load_snapshot(s, sid).portfolio()
    engine.dispose()
    assert stored.positions == pf.positions

    r = evaluate_pool(desk, "sim-x.pm", stored)
    legs = {c.key: c for c in r.contributions}
    long_leg, short_leg = legs["sim-x/um/BTCUSDT:long"], legs["sim-x/um/BTCUSDT:short"]
    assert (long_leg.side, short_leg.side) == (PositionSide.LONG, PositionSide.SHORT)
    assert (long_leg.value_usd, short_leg.value_usd) == (D(500), D(300))  # uPnL 800
    assert (long_leg.mm_usd, short_leg.mm_usd) == (D("152.5"), D("91.5"))
    assert r.mm_usd == D(244)
    assert r.adjusted_equity_usd == D(10_800)
    assert MarginReport.from_json(r.to_json()) == r  # the side survives JSON

    # the scenario model re-prices each leg on its own: worst BTC move −16 %
    pool = Pool("sim-x.pm", "sim-x", frozenset({WalletKind.MARGIN, WalletKind.UM}),
                MarginModelKind.SCENARIO)  # fmt: skip
    no_crash = {"crash": CrashScenario(enabled=False)}
    params = params_for_pool(desk, "sim-x.pm").model_copy(update=no_crash)
    sr = evaluate_portfolio(stored, pool, params)
    loss = {c.key: c.worst_loss_usd for c in sr.contributions}
    assert float(loss["sim-x/um/BTCUSDT:long"] or 0) == pytest.approx(0.16 * 0.5 * 61_000)
    assert float(loss["sim-x/um/BTCUSDT:short"] or 0) == pytest.approx(-0.16 * 0.3 * 61_000)
    assert float(sr.worst_scenarios[0].loss_usd) == pytest.approx(0.16 * 0.2 * 61_000)
