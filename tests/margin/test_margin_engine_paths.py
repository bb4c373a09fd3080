"""The engine's fast paths against their from-scratch twins (STYLE rule 18).

- delta rows: group sums first (``keep_rows=False``) vs every row re-priced then summed;
- many pools in one book vs each pool alone;
- option chunks on worker threads vs one thread, and small vs default chunks.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from margin_factories import bal, inverse, linear, option, pool, portfolio, pos, px, spot

import core.margin.engine as engine
from core.domain import Portfolio, Position
from core.margin.book import PoolBook, build_book
from core.margin.engine import DeltaBlock, OptionBlock, RiskBook, scenario_pnl
from core.margin.params import CollateralRate, MarginParams, ScenarioParams
from core.margin.riskbook import build_risk_book
from core.margin.scenarios import ScenarioMatrix, joint_matrix, stack_grids, unit_grid

S = {"BTC": 95_000.0, "ETH": 3_200.0}
PARAMS = MarginParams.model_validate(
    {
        "collateral_rates": {
            "USDT": CollateralRate.flat(1),
            "BTC": CollateralRate.flat("0.95"),
            "ETH": CollateralRate.flat("0.9"),
        },
        "scenario": {
            "BTC": ScenarioParams(price_range_frac=0.16),
            "ETH": ScenarioParams(price_range_frac=0.18, buckets=6),
        },
    }
)


@st.composite
def pool_books(draw: st.DrawFn, pool_id: str) -> PoolBook:
    """One pool: futures, spot, options and wallet holdings on BTC/ETH, USDT- or BTC-margined."""
    positions: list[Position] = []
    prices = [px("BTC", S["BTC"]), px("ETH", S["ETH"]), px("USDT", 1), px("USD", 1)]
    for i in range(draw(st.integers(0, 6))):
        u = draw(st.sampled_from(["BTC", "ETH"]))
        s = S[u]
        qty = round(draw(st.floats(-40, 40).filter(lambda q: abs(q) > 0.01)), 3)
        kind = draw(st.sampled_from(["linear", "inverse", "spot", "option"]))
        entry = round(s * draw(st.floats(0.8, 1.2)), 2)
        if kind == "linear":
            days = draw(st.none() | st.floats(2, 200))
            inst = linear(f"{u}L{i}", u, expiry_days=days)
            positions.append(pos(inst, qty, entry, "options"))
            prices.append(px(inst.symbol, round(s * draw(st.floats(0.97, 1.03)), 2)))
        elif kind == "inverse":
            inst = inverse(f"{u}I{i}", u, face_usd=100 if u == "BTC" else 10)
            positions.append(pos(inst, round(qty * 10), entry, "options"))
            prices.append(px(inst.symbol, round(s * draw(st.floats(0.98, 1.02)), 2)))
        elif kind == "spot":
            positions.append(pos(spot(f"{u}/USDT{i}", u), abs(qty), s, "options"))
        else:
            settle = draw(st.sampled_from(["linear", "inverse"]))
            inst = option(
                round(s * draw(st.floats(0.6, 1.6))),
                draw(st.sampled_from(["call", "put"])),
                underlying=u,
                days=draw(st.floats(0.5, 400)),
                settlement=settle,
                symbol=f"{u}O{i}",
            )
            mark = 0.01 if settle == "inverse" else 100.0
            positions.append(pos(inst, qty, mark, "options"))
            iv = round(draw(st.floats(0.2, 1.5)), 4)
            prices.append(px(inst.symbol, mark, iv=iv, index=s))
    balances = [bal("USDT", draw(st.integers(0, 5_000_000)), "options")]
    if draw(st.booleans()):
        balances.append(bal("BTC", draw(st.integers(1, 40)), "options"))
    if draw(st.booleans()):
        balances.append(bal("ETH", draw(st.integers(1, 400)), "options", loan=7))
    pf: Portfolio = portfolio(balances, positions, prices)
    mc = draw(st.sampled_from(["USDT", "BTC"]))
    return build_book(pf, pool(("options",), "scenario", mc, pool_id=pool_id), PARAMS)


@st.composite
def many_pools(draw: st.DrawFn) -> list[PoolBook]:
    return [draw(pool_books(f"p{i}")) for i in range(draw(st.integers(1, 4)))]


def _unit_matrix(units: tuple[str, ...]) -> ScenarioMatrix:
    return stack_grids([unit_grid(u, PARAMS.scenario_for(u)) for u in units])


def _joint(units: tuple[str, ...], moves: list[float]) -> ScenarioMatrix:
    pm = np.array([[m * (1.0 + i / 7.0) for m in moves] for i, _ in enumerate(units)])
    vs = np.full_like(pm, 0.3)
    return joint_matrix(units, pm, vs, [f"c{k}" for k in range(len(moves))])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books=many_pools(), moves=st.lists(st.floats(-0.7, 3.0), min_size=1, max_size=5))
def test_engine_group_sums_with_many_pools_equal_row_by_row_sums(
    books: list[PoolBook], moves: list[float]
) -> None:
    risk, labels = build_risk_book([(b, PARAMS) for b in books])
    if not labels.units:
        return
    for matrix in (_unit_matrix(labels.units), _joint(labels.units, moves)):
        fast = scenario_pnl(risk, matrix, keep_rows=False).group_pnl
        res = scenario_pnl(risk, matrix, keep_rows=True)
        assert res.delta_pnl is not None
        assert res.option_pnl is not None
        # from scratch: every row added into its group one at a time
        scratch = np.zeros_like(fast)
        np.add.at(scratch, risk.delta.group, res.delta_pnl)
        np.add.at(scratch, risk.option.group, res.option_pnl)
        gross = float(np.abs(res.delta_pnl).sum() + np.abs(res.option_pnl).sum()) + 1.0
        assert np.allclose(res.group_pnl, scratch, rtol=1e-12, atol=1e-13 * gross)
        assert np.allclose(fast, scratch, rtol=1e-12, atol=1e-13 * gross)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books=many_pools())
def test_engine_with_pools_in_one_book_equals_each_pool_alone(books: list[PoolBook]) -> None:
    risk, labels = build_risk_book([(b, PARAMS) for b in books])
    together = scenario_pnl(risk, _unit_matrix(labels.units), keep_rows=False).group_pnl
    row_of = {key: g for g, key in enumerate(labels.group_keys)}
    for b in books:
        one, one_labels = build_risk_book([(b, PARAMS)])
        alone = scenario_pnl(one, _unit_matrix(one_labels.units), keep_rows=False).group_pnl
        width = alone.shape[1]  # the book of all pools pads shorter grids with column 0
        for g, key in enumerate(one_labels.group_keys):
            got = together[row_of[key]]
            assert np.allclose(got[:width], alone[g], rtol=1e-12, atol=1e-9), key


@pytest.mark.parametrize("keep_rows", [False, True])
def test_btc_margined_pool_with_btc_cash_and_long_perp_loses_m_over_1_plus_m_btc(
    keep_rows: bool,
) -> None:
    # BTC-margined pool, BTC at 95,000: 2 BTC held (worth 2 BTC whatever BTC does), 95,000 USDT
    # cash (1 BTC now, 1/(1+m) BTC after a move m) and a long 2 BTCUSDT perp entered at the mark
    # (2·95,000·m USDT = 2m/(1+m) BTC). In BTC: 0 + (1/(1+m) − 1) + 2m/(1+m) = m/(1+m).
    pf = portfolio(
        [bal("BTC", 2, "options"), bal("USDT", 95_000, "options")],
        [pos(linear(), 2, 95_000, "options")],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000)],
    )
    book = build_book(pf, pool(("options",), "scenario", "BTC"), PARAMS)
    risk, labels = build_risk_book([(book, PARAMS)])
    assert labels.delta_kinds == ("balance", "cash", "linear_perp")
    matrix = _unit_matrix(labels.units)
    m = matrix.price_move[0]
    got = scenario_pnl(risk, matrix, keep_rows=keep_rows).group_pnl[0]
    assert np.allclose(got, m / (1.0 + m), rtol=1e-12, atol=1e-15)
    assert got[np.argmax(m)] == pytest.approx(5.0 / 6.0, rel=1e-12)  # +500 %: 5/6 BTC


def _synthetic_book(n_pools: int, seed: int) -> RiskBook:
    """Engine arrays for many pools of 40 rows on 2 units; every third pool is BTC-margined."""
    rng = np.random.default_rng(seed)
    n = n_pools * 40
    pool_ix = np.repeat(np.arange(n_pools), 40)
    unit = rng.integers(0, 2, n)
    order = np.lexsort((pool_ix, unit))
    pool_ix, unit = pool_ix[order], unit[order]
    group = pool_ix * 2 + unit
    is_opt = rng.random(n) < 0.5
    spot_usd = np.array([S["BTC"], S["ETH"]])[unit]
    qty = rng.normal(0.0, 20.0, n)
    d, o = np.flatnonzero(~is_opt), np.flatnonzero(is_opt)
    delta = DeltaBlock(
        group[d], unit[d], pool_ix[d], qty[d] * spot_usd[d], qty[d] * spot_usd[d] * 0.01
    )
    t = rng.uniform(0.5, 400.0, o.size) / 365.0
    options = OptionBlock(
        group[o],
        unit[o],
        pool_ix[o],
        qty[o],
        spot_usd[o],
        spot_usd[o] * rng.uniform(0.6, 1.6, o.size),
        t,
        rng.uniform(0.2, 1.5, o.size),
        rng.random(o.size) < 0.5,
        (30.0 / np.maximum(t * 365.0, 1.0)) ** 0.3,
        np.full(o.size, 0.01),
    )
    btc_margined = np.arange(n_pools) % 3 == 0
    groups = np.arange(n_pools * 2)
    return RiskBook(
        delta,
        options,
        groups % 2,
        groups // 2,
        np.where(btc_margined, S["BTC"], 1.0),
        np.where(btc_margined, 0, -1),
    )


def test_option_chunks_on_worker_threads_with_large_book_equal_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    book = _synthetic_book(400, seed=12)  # 8,000 option rows × 35 scenarios: threaded
    matrix = _unit_matrix(("BTC", "ETH"))
    assert book.option.size * matrix.n_scenarios >= engine._PARALLEL_MIN_ELEMS
    monkeypatch.setattr(engine, "_WORKERS", 2)
    threaded = scenario_pnl(book, matrix, keep_rows=True)
    assert any(t.name.startswith("pmr-margin") for t in threading.enumerate())
    monkeypatch.setattr(engine, "_WORKERS", 1)
    single = scenario_pnl(book, matrix, keep_rows=True)
    monkeypatch.setattr(engine, "_CHUNK_ELEMS", 64)  # 1-2 rows per chunk: ~4,000 chunks
    tiny = scenario_pnl(book, matrix, keep_rows=True)
    # chunks never split a group, so each group's rows are summed in the same order: bit for bit
    for other in (threaded, tiny):
        assert other.option_pnl is not None
        assert single.option_pnl is not None
        assert np.array_equal(other.option_pnl, single.option_pnl)
        assert np.array_equal(other.group_pnl, single.group_pnl)
    fast = scenario_pnl(book, matrix, keep_rows=False).group_pnl
    assert np.allclose(fast, single.group_pnl, rtol=1e-12, atol=1e-9)


def test_risk_book_with_a_row_outside_its_group_or_a_split_group_is_refused() -> None:
    book = _synthetic_book(3, seed=1)
    d = book.delta
    wrong_unit = DeltaBlock(d.group, 1 - d.unit, d.pool, d.delta_usd, d.value0_usd)
    with pytest.raises(ValueError, match="unit and pool of its group"):
        replace(book, delta=wrong_unit)
    # the first row moved to the end: its group (of several rows) now has two runs
    assert d.group[0] == d.group[1]
    split = DeltaBlock(
        np.roll(d.group, -1),
        np.roll(d.unit, -1),
        np.roll(d.pool, -1),
        np.roll(d.delta_usd, -1),
        np.roll(d.value0_usd, -1),
    )
    with pytest.raises(ValueError, match="contiguous"):
        replace(book, delta=split)
