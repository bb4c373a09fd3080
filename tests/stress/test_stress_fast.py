"""The fast path equals the exact one: ``fast_margin`` / ``evaluate_fast`` vs ``evaluate_pool``.

Tolerance: ratio, equity, adjusted equity, MM and deficit agree to a relative 1e-9 plus 1e-6 USD
(the exact path quantises money to 1e-8 USD, ratios to 1e-9 and option marks to 1e-8; the fast
path is float64 throughout, with no model approximation).
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import DeskConfig, load_desk, parse_desk
from core.domain import Portfolio
from core.errors import DataError
from core.margin import evaluate_pool
from core.stress.evaluate import _worst_position, evaluate
from core.stress.fast import (
    _OptionCopies,
    compile_desk,
    evaluate_fast,
    fast_margin,
    moves_from_scenarios,
    pool_monte_carlo_fast,
)
from core.stress.montecarlo import pool_monte_carlo
from core.stress.scenarios import Scenario, ScenarioKind, library
from core.stress.shocks import shock_portfolio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
DESK = load_desk(EXAMPLE)
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STATE = DESK.initial_portfolio(AT)
STABLES = [a for a, c in DESK.assets.items() if c.kind == "stablecoin"]
LIB = library(venues=[v.name for v in DESK.venues], assets=list(DESK.assets), stablecoins=STABLES)
REL, ABS = 1e-9, 1e-6


def _variant() -> DeskConfig:
    """The example desk with the models swapped around: the USDⓈ-M pool margined by the
    ``scenario`` model in BTC (a coin-margined risk book: the margin currency moves), the
    options pool by the ``standard`` rules (Bybit's short-option margin)."""
    data = tomllib.loads(EXAMPLE.read_text())
    for p in data["pools"]:
        if p["id"] == "sim-b.um":
            p["model"], p["margin_currency"] = "scenario", "BTC"
        elif p["id"] == "sim-b.opt":
            p["model"] = "standard"
    return parse_desk(data, source="variant")


VARIANT = _variant()


def _twin() -> DeskConfig:
    """The example desk's venues, pools, balances and positions twice: the copy (``-2``) holds
    1.5 × the positions, so two ``scenario`` pools hold the same option contracts in different
    sizes (re-priced once per contract) on venues a joint move moves alike and a de-peg printed
    on ``sim-b`` alone moves apart."""
    data = tomllib.loads(EXAMPLE.read_text())
    for key in ("routes", "swaps", "preauth", "withdraw_addresses"):
        data.pop(key, None)
    data["preauth_groups"], data["preauth_venues"] = {}, {}
    names = {"sim-a": "sim-a-2", "sim-b": "sim-b-2"}
    for p in data["pools"]:
        names[p["id"]] = p["id"] + "-2"
    for key in ("venues", "pools", "balances", "positions"):
        copies = [{k: names.get(v, v) if k in ("name", "venue", "id") else v for k, v in x.items()}
                  for x in data[key]]  # fmt: skip
        for x in copies:
            if key == "positions":
                x["qty"] = str(Decimal(x["qty"]) * Decimal("1.5"))
        data[key] = data[key] + copies
    return parse_desk(data, source="twin")


def _close(a: float, b: float) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= REL * abs(a) + ABS


def _check(desk: DeskConfig, state: Portfolio, scenarios: list[Scenario]) -> None:
    fd = compile_desk(desk, state)
    res = fast_margin(fd, moves_from_scenarios(fd, scenarios), worst=True)
    assert res.worst is not None
    instruments = desk.instrument_map()
    for s, sc in enumerate(scenarios):
        for p, pid in enumerate(fd.pool_ids):
            pool = desk.pool(pid)
            shocked = shock_portfolio(
                state, instruments, sc.moves_on(pool.venue), vol_up_frac=sc.vol_up_frac
            )
            rep = evaluate_pool(desk, pid, shocked)
            where = f"{pid} under {sc.name}"
            assert _close(float(rep.equity_usd), res.equity_usd[p, s]), where
            assert _close(float(rep.adjusted_equity_usd), res.adjusted_usd[p, s]), where
            assert _close(float(rep.mm_usd), res.mm_usd[p, s]), where
            ratio = np.nan if rep.ratio is None else float(rep.ratio)
            assert _close(ratio, res.ratio[p, s]), where
            target = pool.thresholds.target
            assert _close(float(rep.deficit(target)), res.deficit_usd[p, s]), where
            assert _worst_position(rep) == res.worst[p][s], where


def test_every_library_scenario_matches_the_exact_reports() -> None:
    _check(DESK, STATE, list(LIB.values()))


def test_swapped_models_match_too() -> None:
    # scenario model in BTC (coin-margined) and the standard rules on the options book
    _check(VARIANT, VARIANT.initial_portfolio(AT), list(LIB.values()))


def test_pools_sharing_option_contracts_match_too() -> None:
    twin = _twin()
    state = twin.initial_portfolio(AT)
    fd = compile_desk(twin, state)
    part = fd.scenario
    assert part is not None
    assert part.pools.size == 2
    assert part.risk.option.size == 6
    joint = [sc for sc in LIB.values() if sc.kind is ScenarioKind.JOINT]
    for batch, contracts in ((joint, 3), (list(LIB.values()), 6)):
        # a joint move prices the copies' three contracts once; a de-peg printed on sim-b
        # alone (in the library) moves sim-b-2 apart, so each pool's are priced on their own
        mv = moves_from_scenarios(fd, batch)
        p0 = np.ones(part.risk.n_groups * mv.n)
        assert _OptionCopies.of(part, mv, p0).pricing.option.size == contracts * mv.n
        _check(twin, state, batch)


def test_no_move_is_the_unshocked_report() -> None:
    fd = compile_desk(DESK, STATE)
    res = fast_margin(fd, moves_from_scenarios(fd, [Scenario("zero", ScenarioKind.JOINT, "0")]))
    for p, pid in enumerate(fd.pool_ids):
        rep = evaluate_pool(DESK, pid, STATE)
        assert rep.ratio is not None
        assert _close(float(rep.ratio), res.ratio[p, 0])
        assert _close(float(rep.mm_usd), res.mm_usd[p, 0])


def test_evaluate_fast_returns_the_rows_evaluate_returns() -> None:
    scenarios = list(LIB.values())
    exact = evaluate(DESK, STATE, scenarios)
    fast = evaluate_fast(DESK, STATE, scenarios)
    assert len(fast) == len(exact)
    assert any(r.deficit_usd > 0 for r in exact)
    assert any(r.deficit_usd == 0 for r in exact)
    for a, b in zip(exact, fast, strict=True):
        assert (a.pool_id, a.scenario) == (b.pool_id, b.scenario)
        if a.ratio is None:
            assert b.ratio is None
        else:
            assert b.ratio is not None
            assert abs(a.ratio - b.ratio) <= Decimal("2e-9")
        assert replace(a, ratio=None) == replace(b, ratio=None)


def test_batches_give_the_same_figures() -> None:
    scenarios = list(LIB.values())
    fd = compile_desk(DESK, STATE)
    whole = fast_margin(fd, moves_from_scenarios(fd, scenarios), worst=True)
    for cut in (1, 7, 20):
        parts = [
            fast_margin(fd, moves_from_scenarios(fd, scenarios[lo : lo + cut]), worst=True)
            for lo in range(0, len(scenarios), cut)
        ]
        for name in ("ratio", "equity_usd", "adjusted_usd", "mm_usd", "deficit_usd"):
            joined = np.concatenate([getattr(x, name) for x in parts], axis=1)
            np.testing.assert_allclose(joined, getattr(whole, name), rtol=1e-12, atol=1e-9)
        assert whole.worst is not None
        worst: list[list[str | None]] = [[] for _ in range(fd.n_pools)]
        for x in parts:
            assert x.worst is not None
            for p in range(fd.n_pools):
                worst[p] += x.worst[p]
        assert worst == whole.worst


def test_fast_monte_carlo_matches_the_exact_one_on_the_same_draws() -> None:
    exact = pool_monte_carlo(DESK, STATE, paths=25, seed=5)
    fast = pool_monte_carlo_fast(DESK, STATE, paths=25, seed=5, batch=7)
    for a, b in zip(exact, fast, strict=True):
        assert a.pool_id == b.pool_id
        np.testing.assert_allclose(b.ratios, a.ratios, rtol=1e-9, atol=1e-9)
        assert a.p_call == b.p_call
        assert a.p_liquidation == b.p_liquidation
        assert abs(a.es99_deficit_usd - b.es99_deficit_usd) <= 1e-6 * a.es99_deficit_usd + 1e-4


def test_a_unified_pool_holding_an_option_is_refused_like_the_model_does() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    for p in data["pools"]:
        if p["id"] == "sim-b.opt":
            p["model"] = "unified"
    desk = parse_desk(data, source="bad")
    with pytest.raises(DataError, match="does not margin options"):
        compile_desk(desk, desk.initial_portfolio(AT))


_move = st.floats(min_value=-0.7, max_value=1.5, allow_nan=False)
_scale = st.floats(min_value=0.05, max_value=3.0, allow_nan=False)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[DeskConfig, Portfolio, list[Scenario]]:
    desk = draw(st.sampled_from([DESK, VARIANT]))
    base = desk.initial_portfolio(AT)
    cash = draw(_scale)
    balances = [replace(b, amount=b.amount * Decimal(repr(round(cash, 4)))) for b in base.balances]
    positions = []
    for p in base.positions:
        k = Decimal(repr(round(draw(_scale), 4))) * draw(st.sampled_from([1, 1, -1]))
        positions.append(replace(p, qty=(p.qty * k).quantize(Decimal("0.001"))))
    state = Portfolio(tuple(balances), tuple(p for p in positions if p.qty != 0), base.prices, AT)
    scenarios = []
    for i in range(draw(st.integers(1, 3))):
        moves = {a: draw(_move) for a in draw(st.sets(st.sampled_from(sorted(desk.assets))))}
        local = {}
        if draw(st.booleans()):
            local = {"sim-b": {"USDT": draw(st.floats(-0.4, 0.05, allow_nan=False))}}
        vol = draw(st.floats(min_value=-0.5, max_value=2.0, allow_nan=False))
        scenarios.append(
            Scenario(f"r{i}", ScenarioKind.JOINT, "random", moves, local, vol_up_frac=vol)
        )
    return desk, state, scenarios


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_random_books_and_moves_match_the_exact_reports(
    case: tuple[DeskConfig, Portfolio, list[Scenario]],
) -> None:
    _check(*case)


def test_pmr_stress_engine_fast_prints_what_the_exact_engine_prints() -> None:
    import json

    from typer.testing import CliRunner

    from flows.cli import app

    args = ["stress", "--desk", str(EXAMPLE), "--as-of", "2026-11-27T12:00:00Z",
            "--scenario", "joint-btc-30%-vol+50%", "--scenario", "joint-btc-10%-vol+0%",
            "--paths", "15", "--seed", "3", "--format", "json"]  # fmt: skip
    runner = CliRunner()
    exact = runner.invoke(app, [*args, "--engine", "exact"])
    fast = runner.invoke(app, [*args, "--engine", "fast"])
    assert exact.exit_code == 0, exact.output
    assert fast.exit_code == 0, fast.output
    a, b = json.loads(exact.stdout), json.loads(fast.stdout)
    for x, y in zip(a["results"], b["results"], strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if k == "ratio" and x[k] is not None:
                assert abs(float(x[k]) - float(y[k])) <= 2e-9
            else:
                assert x[k] == y[k], k
    for x, y in zip(a["monte_carlo"], b["monte_carlo"], strict=True):
        assert x["p_call"] == y["p_call"]
        for q, v in x["ratio_quantiles"].items():
            assert abs(v - y["ratio_quantiles"][q]) <= 1e-8
    bad = runner.invoke(app, ["stress", "--desk", str(EXAMPLE), "--engine", "turbo"])
    assert bad.exit_code == 2
    assert "--engine" in bad.output
