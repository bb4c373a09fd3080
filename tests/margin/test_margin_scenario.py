"""The ``scenario`` model: vectorised engine vs the loop oracle, worked examples, properties."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from margin_factories import bal, inverse, linear, option, pool, portfolio, pos, px, spot

from core.domain import Portfolio, Position
from core.margin.api import evaluate_portfolio
from core.margin.book import build_book
from core.margin.engine import FloatArray, scenario_pnl
from core.margin.oracle import oracle_joint_pnl, oracle_scenario
from core.margin.params import (
    Bracket,
    CollateralRate,
    CrashScenario,
    MarginParams,
    OffsetCredit,
    ScenarioParams,
)
from core.margin.report import MarginReport
from core.margin.riskbook import build_risk_book
from core.margin.scenarios import extended_weight, joint_matrix, stack_grids, unit_grid

D = Decimal
S = {"BTC": 95_000.0, "ETH": 3_200.0}
RATES = {
    "USDT": CollateralRate.flat(1),
    "BTC": CollateralRate.flat("0.95"),
    "ETH": CollateralRate.flat("0.9"),
}


def _params(**kw: object) -> MarginParams:
    base: dict[str, object] = {
        "collateral_rates": RATES,
        "scenario": {
            "BTC": ScenarioParams(price_range_frac=0.16),
            "ETH": ScenarioParams(price_range_frac=0.18),
        },
    }
    base.update(kw)
    return MarginParams.model_validate(base)


def _prices(extra: list[tuple[str, float, float | None, float | None]]) -> list:  # type: ignore[type-arg]
    out = [px("BTC", S["BTC"]), px("ETH", S["ETH"]), px("USDT", 1), px("USD", 1)]
    for sym, mark, iv, index in extra:
        out.append(px(sym, round(mark, 6), iv=iv, index=index))
    return out


@st.composite
def books(draw: st.DrawFn) -> tuple[Portfolio, str]:
    """Random options/futures books on BTC and ETH, USDT- or BTC-margined."""
    positions: list[Position] = []
    prices: list[tuple[str, float, float | None, float | None]] = []
    n = draw(st.integers(1, 8))
    for i in range(n):
        u = draw(st.sampled_from(["BTC", "ETH"]))
        s = S[u]
        kind = draw(st.sampled_from(["linear", "linear_future", "inverse", "option", "spot"]))
        qty = draw(st.floats(-50, 50).filter(lambda q: abs(q) > 0.01))
        qty = round(qty, 3)
        if kind in ("linear", "linear_future"):
            days = None if kind == "linear" else draw(st.floats(2, 200))
            inst = linear(f"{u}L{i}", u, expiry_days=days)
            mark = s * draw(st.floats(0.95, 1.05))
            positions.append(pos(inst, qty, round(s * draw(st.floats(0.8, 1.2)), 2), "options"))
            prices.append((inst.symbol, mark, None, None))
        elif kind == "inverse":
            inst = inverse(f"{u}I{i}", u, face_usd=100 if u == "BTC" else 10)
            positions.append(
                pos(inst, round(qty * 10), round(s * draw(st.floats(0.8, 1.2)), 2), "options")
            )
            prices.append((inst.symbol, s * draw(st.floats(0.98, 1.02)), None, None))
        elif kind == "spot":
            inst = spot(f"{u}/USDT{i}", u)
            positions.append(pos(inst, abs(qty), s, "options"))
        else:
            strike = round(s * draw(st.floats(0.6, 1.6)), 0)
            right = draw(st.sampled_from(["call", "put"]))
            days = draw(st.floats(0.5, 400))
            settle = draw(st.sampled_from(["linear", "inverse"]))
            inst = option(
                strike, right, underlying=u, days=days, settlement=settle, symbol=f"{u}O{i}"
            )
            iv = round(draw(st.floats(0.2, 1.5)), 4)
            positions.append(pos(inst, qty, 0.01 if settle == "inverse" else 100.0, "options"))
            prices.append(
                (
                    inst.symbol,
                    0.01 if settle == "inverse" else 100.0,
                    iv,
                    round(s * draw(st.floats(0.99, 1.01)), 2),
                )
            )
    balances = [bal("USDT", draw(st.integers(0, 5_000_000)), "options")]
    if draw(st.booleans()):
        balances.append(bal("BTC", draw(st.integers(0, 40)), "options"))
    if draw(st.booleans()):
        balances.append(
            bal("ETH", draw(st.integers(0, 400)), "options", loan=draw(st.integers(0, 50)))
        )
    mc = draw(st.sampled_from(["USDT", "BTC"]))
    return portfolio(balances, positions, _prices(prices)), mc


def _close(a: float, b: float, gross: float) -> bool:
    """1e-9 relative, plus the report's 1e-8 quantisation and float noise on gross exposure."""
    ok = abs(a - b) <= 1e-9 * max(abs(a), abs(b)) + 2e-8 + 1e-12 * gross
    if not ok:
        print(f"mismatch: engine {a!r} oracle {b!r} gross {gross!r}")
    return ok


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=books(), span=st.booleans(), offsets=st.booleans())
def test_engine_with_random_books_agrees_with_loop_oracle_to_1e_9(
    case: tuple[Portfolio, str], span: bool, offsets: bool
) -> None:
    pf, mc = case
    extra: dict[str, object] = {}
    if span:
        extra["scenario"] = {
            "BTC": ScenarioParams(
                price_range_frac=0.16,
                span_extreme=True,
                delta_hedged_frac=0.01,
                delta_unhedged_frac=0.02,
                roll_move_annual_frac=0.05,
            ),
            "ETH": ScenarioParams(price_range_frac=0.18, buckets=6, vol_power_short=0.5),
        }
    if offsets:
        extra["offsets"] = (OffsetCredit(units=("BTC", "ETH"), credit_frac=0.4),)
    params = _params(**extra)
    book = build_book(pf, pool(("options",), "scenario", mc), params)
    oracle = oracle_scenario(book, params)
    report = evaluate_portfolio(pf, pool(("options",), "scenario", mc), params)
    p0 = float(book.mc_price_usd)
    gross = sum(abs(float(p.units)) * S[p.unit] for p in book.positions) / p0 + 1.0
    assert _close(float(report.mm_usd) / p0, oracle.mm, gross)
    assert _close(float(report.im_usd) / p0, oracle.im, gross)
    if oracle.crash_weighted is not None:
        assert report.crash_loss_weighted_usd is not None
        assert report.crash_loss_raw_usd is not None
        assert oracle.crash_raw is not None
        assert _close(float(report.crash_loss_weighted_usd) / p0, oracle.crash_weighted, gross)
        assert _close(float(report.crash_loss_raw_usd) / p0, oracle.crash_raw, gross)
    for u in report.worst_scenarios:
        assert _close(float(u.roll_usd) / p0, oracle.roll_unit[u.unit], gross)
    for u in report.worst_scenarios:
        assert _close(float(u.loss_usd) / p0, oracle.scan[u.unit], gross)
    # Per-position, per-scenario PnL: the full matrix, not only the maxima.
    risk, labels = build_risk_book([(book, params)])
    matrix = stack_grids([unit_grid(u, params.scenario_for(u)) for u in labels.units])
    res = scenario_pnl(risk, matrix)
    assert res.delta_pnl is not None
    assert res.option_pnl is not None
    for rows, keys, block in (
        (res.delta_pnl, labels.delta_keys, risk.delta),
        (res.option_pnl, labels.option_keys, risk.option),
    ):
        for i, key in enumerate(keys):
            expect = oracle.row_pnl[key]
            got = rows[i, : len(expect)]
            scale = abs(float(block.unit.size)) + gross
            assert np.allclose(got, expect, rtol=1e-9, atol=1e-9 * scale), key


def test_extended_weight_with_paradex_rule_is_r_over_2m_then_r_over_2m_squared() -> None:
    assert extended_weight(-0.66, 0.16) == pytest.approx(0.16 / 1.32)
    assert extended_weight(1.0, 0.16) == pytest.approx(0.08)
    assert extended_weight(5.0, 0.16) == pytest.approx(0.16 / 50.0)


def test_grid_with_deribit_defaults_has_27_grid_and_8_extended_scenarios() -> None:
    g = unit_grid("BTC", ScenarioParams())
    assert len(g) == 35
    grid_moves = sorted({round(float(m), 4) for m in g.price_move[:27]})
    assert grid_moves == [-0.16, -0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12, 0.16]
    span = unit_grid("BTC", ScenarioParams(span_extreme=True))
    assert len(span) == 37
    assert sorted(float(m) for m in span.price_move[-2:]) == pytest.approx([-0.32, 0.32])


def test_short_inverse_perp_in_btc_margined_pool_loses_q_times_1_minus_1_over_1_plus_m() -> None:
    # DESIGN §3.1: a short inverse perp of q coin-equivalent loses q·(1 − 1/(1+m)) coin.
    q_coin = 2.0  # 1,900 contracts × 100 USD at 95,000
    pf = portfolio(
        [bal("BTC", 10, "options")],
        [pos(inverse(), -1900, 95_000, "options")],
        _prices([("BTCUSD_PERP", 95_000.0, None, None)]),
    )
    params = _params(crash=CrashScenario(enabled=False))
    report = evaluate_portfolio(pf, pool(("options",), "scenario", "BTC"), params)
    btc = report.worst_scenarios[0]
    assert btc.scenario_id == "BTC:extended:+5.0000:vol-up" or btc.price_move_frac > 0
    m = float(btc.price_move_frac)
    expected_coin = q_coin * (1 - 1 / (1 + m)) * float(btc.weight)
    assert float(btc.loss_usd) / 95_000 == pytest.approx(expected_coin, rel=1e-9)


def test_roll_shock_with_short_inverse_perp_is_the_annual_move_times_coin_size() -> None:
    # Deribit-style BTC-margined pool: short 1,900 × 100 USD inverse perp at 95,000 = 2 BTC.
    # Roll = 0.5 % × 2 BTC = 0.01 BTC = 950 USD, perps included, no time scaling.
    pf = portfolio(
        [bal("BTC", 10, "options")],
        [pos(inverse(), -1900, 95_000, "options")],
        _prices([("BTCUSD_PERP", 95_000.0, None, None)]),
    )
    roll = {"BTC": ScenarioParams(price_range_frac=0.16, roll_move_annual_frac=0.005)}
    params = _params(crash=CrashScenario(enabled=False), scenario=roll)
    r = evaluate_portfolio(pf, pool(("options",), "scenario", "BTC"), params)
    (btc,) = r.worst_scenarios
    assert btc.roll_usd == D(950)
    assert btc.im_usd == btc.loss_usd + D(950)
    assert float(r.mm_usd) == pytest.approx(0.8 * float(btc.im_usd), rel=1e-12)
    book = build_book(pf, pool(("options",), "scenario", "BTC"), params)
    assert oracle_scenario(book, params).roll_unit["BTC"] == pytest.approx(0.01, rel=1e-12)


@pytest.mark.parametrize("days", [7, 180])
def test_roll_shock_with_calendar_spread_charges_both_legs_whatever_the_expiry(days: int) -> None:
    # Long 2 BTCUSDT perp and short 2 of a dated future, both marked 95,000: the price scan
    # nets to 0 and the roll shock, 0.5 % × (2 + 2) BTC × 95,000 = 1,900 USD, is the whole IM.
    fut = linear("BTCUSDT_Q", expiry_days=days)
    pf = portfolio(
        [bal("USDT", 1_000_000, "options")],
        [pos(linear(), 2, 95_000, "options"), pos(fut, -2, 95_000, "options")],
        _prices([("BTCUSDT", 95_000.0, None, None), ("BTCUSDT_Q", 95_000.0, None, None)]),
    )
    roll = {"BTC": ScenarioParams(price_range_frac=0.16, roll_move_annual_frac=0.005)}
    r = evaluate_portfolio(
        pf,
        pool(("options",), "scenario"),
        _params(crash=CrashScenario(enabled=False), scenario=roll),
    )
    (btc,) = r.worst_scenarios
    assert abs(btc.loss_usd) < D("1e-6")
    assert btc.roll_usd == D(1900)
    assert r.im_usd == D(1900)
    assert r.mm_usd == D(1520)


def _hedge_book(qty: float, wallet_btc: float, cash: float = 1_000_000) -> Portfolio:
    return portfolio(
        [bal("USDT", cash, "options"), bal("BTC", wallet_btc, "options")],
        [pos(linear(), -qty, 95_000, "options")],
        _prices([("BTCUSDT", 95_000.0, None, None)]),
    )


def test_long_spot_and_short_perp_of_same_size_have_near_zero_price_loss() -> None:
    params = _params(crash=CrashScenario(enabled=False))
    r = evaluate_portfolio(_hedge_book(10, 10), pool(("options",), "scenario"), params)
    assert abs(float(r.worst_scenarios[0].loss_usd)) < 1e-6
    # … and with the spot leg as a spot position instead of a wallet balance:
    pf = portfolio(
        [bal("USDT", 1_000_000, "options")],
        [pos(linear(), -10, 95_000, "options"), pos(spot(), 10, 95_000, "options")],
        _prices([("BTCUSDT", 95_000.0, None, None)]),
    )
    r2 = evaluate_portfolio(pf, pool(("options",), "scenario"), params)
    assert abs(float(r2.worst_scenarios[0].loss_usd)) < 1e-6


def test_linear_position_and_its_opposite_have_opposite_scenario_pnl() -> None:
    params = _params()

    def rows(q: float) -> FloatArray:
        pf = portfolio(
            [], [pos(linear(), q, 90_000, "options")], _prices([("BTCUSDT", 95_100.0, None, None)])
        )
        book = build_book(pf, pool(("options",), "scenario"), params)
        risk, _labels = build_risk_book([(book, params)])
        return scenario_pnl(
            risk, stack_grids([unit_grid("BTC", params.scenario_for("BTC"))])
        ).group_pnl

    assert np.allclose(rows(3.5), -rows(-3.5), rtol=0, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(case=books(), k=st.sampled_from([2, 3, 10]))
def test_scaling_every_position_by_k_scales_scan_risk_by_k(
    case: tuple[Portfolio, str], k: int
) -> None:
    pf, _ = case
    params = _params()
    scaled = Portfolio(
        tuple(b for b in pf.balances if b.asset.code == "USDT"),
        tuple(
            Position(p.venue, p.wallet, p.instrument, p.qty * k, p.entry_price)
            for p in pf.positions
        ),
        pf.prices,
        pf.as_of,
    )
    base = Portfolio(
        tuple(b for b in pf.balances if b.asset.code == "USDT"), pf.positions, pf.prices, pf.as_of
    )
    r1 = evaluate_portfolio(base, pool(("options",), "scenario"), params)
    rk = evaluate_portfolio(scaled, pool(("options",), "scenario"), params)
    for a, b in zip(r1.worst_scenarios, rk.worst_scenarios, strict=True):
        assert float(b.loss_usd) == pytest.approx(k * float(a.loss_usd), rel=1e-9, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(case=books(), extra=st.integers(1, 10_000_000))
def test_adding_cash_never_lowers_the_ratio_and_mm_is_never_negative(
    case: tuple[Portfolio, str], extra: int
) -> None:
    pf, mc = case
    params = _params()
    r1 = evaluate_portfolio(pf, pool(("options",), "scenario", mc), params)
    richer = Portfolio(
        (*pf.balances, bal("USDT", extra, "options")), pf.positions, pf.prices, pf.as_of
    )
    r2 = evaluate_portfolio(richer, pool(("options",), "scenario", mc), params)
    assert r1.mm_usd >= 0
    assert r2.mm_usd >= 0
    if mc == "USDT" and r1.ratio is not None and r2.ratio is not None:
        assert r2.ratio >= r1.ratio
    assert r2.adjusted_equity_usd > r1.adjusted_equity_usd


def test_offset_credit_with_opposite_worst_moves_reduces_im() -> None:
    pf = portfolio(
        [bal("USDT", 5_000_000, "options")],
        [
            pos(linear(), 10, 95_000, "options"),
            pos(linear("ETHUSDT", "ETH"), -300, 3200, "options"),
        ],
        _prices([("BTCUSDT", 95_000.0, None, None), ("ETHUSDT", 3200.0, None, None)]),
    )
    no_credit = _params(crash=CrashScenario(enabled=False))
    credit = _params(
        crash=CrashScenario(enabled=False),
        offsets=(OffsetCredit(units=("BTC", "ETH"), credit_frac=0.5),),
    )
    a = evaluate_portfolio(pf, pool(("options",), "scenario"), no_credit)
    b = evaluate_portfolio(pf, pool(("options",), "scenario"), credit)
    smaller = min(u.loss_usd for u in a.worst_scenarios)
    assert a.im_usd - b.im_usd == pytest.approx(D("0.5") * smaller, abs=D("1e-6"))


def test_crash_with_same_direction_book_reports_raw_and_tail_weighted_loss_and_scans_bind() -> None:
    # Long 10 BTC (950,000) and 300 ETH (960,000) linear, crash −30 % (docs/margin.md example).
    pf = portfolio(
        [bal("USDT", 5_000_000, "options")],
        [pos(linear(), 10, 95_000, "options"), pos(linear("ETHUSDT", "ETH"), 300, 3200, "options")],
        _prices([("BTCUSDT", 95_000.0, None, None), ("ETHUSDT", 3200.0, None, None)]),
    )
    r = evaluate_portfolio(pf, pool(("options",), "scenario"), _params())
    assert r.crash_loss_raw_usd == D("0.3") * (10 * 95_000 + 300 * 3200)  # 573,000
    # weights R/(2|m|): BTC 0.16/0.6, ETH 0.18/0.6 → 76,000 + 86,400
    assert float(r.crash_loss_weighted_usd or 0) == pytest.approx(162_400, rel=1e-12)
    # the units' own scans bind: 16 % of 950,000 + 18 % of 960,000
    assert float(r.im_usd) == pytest.approx(152_000 + 172_800, rel=1e-12)
    assert float(r.mm_usd) == pytest.approx(0.8 * 324_800, rel=1e-12)


def test_offset_credit_with_a_zero_move_worst_scenario_is_never_given() -> None:
    # A delta-hedged long 1-day ETH call loses most when nothing moves and vol falls: a worst
    # move of exactly 0 has no direction, so it earns no BTC/ETH offset credit (found by the
    # oracle test: a grid middle of ±1e-17 used to take a sign).
    assert all(unit_grid("ETH", ScenarioParams(buckets=n)).price_move[n] == 0.0 for n in (4, 6))
    pf = portfolio(
        [bal("USDT", 1_000_000, "options")],
        [
            pos(option(3200, "call", underlying="ETH", days=1, symbol="EC"), 2, 100, "options"),
            pos(linear("ETHUSDT", "ETH"), -1, 3200, "options"),
            pos(linear(), 4, 95_000, "options"),
        ],
        _prices([("EC", 100.0, 1.0, 3200.0), ("ETHUSDT", 3200.0, None, None),
                 ("BTCUSDT", 95_000.0, None, None)]),
    )  # fmt: skip
    scenario = {"BTC": ScenarioParams(), "ETH": ScenarioParams(price_range_frac=0.18, buckets=6)}
    params = _params(
        scenario=scenario, offsets=(OffsetCredit(units=("BTC", "ETH"), credit_frac=0.4),)
    )
    r = evaluate_portfolio(pf, pool(("options",), "scenario"), params)
    eth = next(u for u in r.worst_scenarios if u.unit == "ETH")
    assert eth.scenario_id == "ETH:grid:+0.0000:vol-down"
    assert all(u.credit_usd == 0 for u in r.worst_scenarios)
    oracle = oracle_scenario(build_book(pf, pool(("options",), "scenario"), params), params)
    assert float(r.im_usd) == pytest.approx(oracle.im, rel=1e-9)


def test_crash_floor_binds_where_the_crash_lands_on_a_capped_loss() -> None:
    # A short 1-day ETH put spread 2,624 / 2,304 (×100): its loss is capped at 320 × 100 =
    # 32,000 below 2,304, which the −30 % crash (2,240) reaches and the −18 % grid does not.
    # Weighted crash = 0.18 / (2 × 0.3) = 0.3 × raw, above the unit's own scan: it sets IM.
    short_put = option(2624, "put", underlying="ETH", days=1, symbol="EP1")
    long_put = option(2304, "put", underlying="ETH", days=1, symbol="EP2")
    pf = portfolio(
        [bal("USDT", 1_000_000, "options")],
        [pos(short_put, -100, 1, "options"), pos(long_put, 100, 1, "options")],
        [
            px("ETH", 3200),
            px("USDT", 1),
            px("EP1", 1, iv="0.6", index=3200),
            px("EP2", 1, iv="0.6", index=3200),
        ],
    )
    params = _params()
    r = evaluate_portfolio(pf, pool(("options",), "scenario"), params)
    raw, weighted = r.crash_loss_raw_usd, r.crash_loss_weighted_usd
    assert raw is not None
    assert weighted is not None
    assert 0.8 * 32_000 < float(raw) < 32_000
    assert float(weighted) == pytest.approx(0.3 * float(raw), rel=1e-9)
    (eth,) = r.worst_scenarios
    assert weighted > eth.im_usd
    assert r.im_usd == weighted
    assert float(r.mm_usd) == pytest.approx(0.8 * float(weighted), rel=1e-9)
    oracle = oracle_scenario(build_book(pf, pool(("options",), "scenario"), params), params)
    assert oracle.im == pytest.approx(float(weighted), rel=1e-9)


def test_scenario_report_with_contributions_sums_to_unit_loss() -> None:
    opt = option(100_000, "call", days=45, symbol="BTC-C")
    pf = portfolio(
        [bal("USDT", 3_000_000, "options")],
        [pos(opt, -50, 4000, "options"), pos(linear(), 20, 95_000, "options")],
        _prices([("BTC-C", 4000.0, 0.55, 95_000.0), ("BTCUSDT", 95_000.0, None, None)]),
    )
    brackets = {"BTCUSDT": (Bracket(floor_usd=D(0), mmr=D("0.005")),)}
    r = evaluate_portfolio(pf, pool(("options",), "scenario"), _params(brackets=brackets))
    total = sum((c.worst_loss_usd or D(0)) for c in r.contributions)
    assert float(total) == pytest.approx(float(r.worst_scenarios[0].loss_usd), rel=1e-9)
    assert MarginReport.from_json(r.to_json()) == r
    assert r.capital_efficiency is not None  # standard comparison: Bybit options + brackets


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=books(),
    btc=st.floats(-0.7, 3.0),
    eth=st.floats(-0.7, 3.0),
    vol=st.floats(-0.5, 1.0),
)
def test_joint_stress_matrix_with_random_moves_agrees_with_loop_oracle(
    case: tuple[Portfolio, str], btc: float, eth: float, vol: float
) -> None:
    # What stress tests call: one RiskBook, joint columns moving every unit at once.
    pf, mc = case
    params = _params()
    book = build_book(pf, pool(("options",), "scenario", mc), params)
    risk, labels = build_risk_book([(book, params)])
    moves = {"BTC": btc, "ETH": eth}
    vols = dict.fromkeys(moves, vol)
    pm = np.array([[moves[u], 0.0] for u in labels.units])
    vs = np.array([[vols[u], 0.0] for u in labels.units])
    matrix = joint_matrix(labels.units, pm, vs, ["shock", "nothing"])
    got = scenario_pnl(risk, matrix, keep_rows=False).group_pnl.sum(axis=0)
    expect = oracle_joint_pnl(book, params, moves, vols)
    gross = sum(abs(float(p.units)) * S[p.unit] for p in book.positions) + 1.0
    assert _close(float(got[0]), expect, gross)
    assert abs(float(got[1])) <= 1e-12 * gross


def test_scenario_defaults_with_nothing_configured_are_deribit_btc_16_eth_18() -> None:
    params = MarginParams()
    assert params.scenario_for("BTC").price_range_frac == 0.16
    assert params.scenario_for("ETH").price_range_frac == 0.18
    assert params.scenario_for("SOL") == ScenarioParams()
    assert params.scenario_for("ETH").mm_factor == 0.8
    assert params.scenario_for("ETH").buckets == 4


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=books(), moves=st.lists(st.floats(-0.7, 3.0), min_size=2, max_size=6))
def test_engine_sum_first_path_equals_row_by_row_path(
    case: tuple[Portfolio, str], moves: list[float]
) -> None:
    # Twin check (STYLE 18): without per-row results, delta rows are summed per group before
    # the scenario multiply; it must give the row-by-row group PnL, coin-margined pools included.
    pf, mc = case
    params = _params()
    book = build_book(pf, pool(("options",), "scenario", mc), params)
    risk, labels = build_risk_book([(book, params)])
    pm = np.array([[m * (1 + i / 10) for m in moves] for i, _ in enumerate(labels.units)])
    vs = np.zeros_like(pm)
    matrix = joint_matrix(labels.units, pm, vs, [f"c{k}" for k in range(len(moves))])
    fast = scenario_pnl(risk, matrix, keep_rows=False).group_pnl
    rows = scenario_pnl(risk, matrix, keep_rows=True).group_pnl
    scale = float(np.abs(rows).max()) + 1.0
    assert np.allclose(fast, rows, rtol=1e-12, atol=1e-12 * scale)
