"""Sources from the desk state (examples/desk.toml) and the CLI on top of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from routing_helpers import amounts_by_source, legs_over_cap
from typer.testing import CliRunner

from core.config import DeskConfig, load_desk
from core.domain import Portfolio
from core.errors import DataError
from core.margin.api import evaluate_pool
from core.margin.params import CollateralRate, CollateralTier
from core.margin.report import MarginReport
from core.routing import Router, SourceMode, Tier
from core.routing.from_state import marginal_rate_segments, routing_input_from_state
from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
DESK = ROOT / "examples" / "desk.toml"
AT = datetime(2026, 11, 27, tzinfo=UTC)
DeskState = tuple[DeskConfig, Portfolio, dict[str, MarginReport]]


@pytest.fixture(scope="module")
def desk_state() -> DeskState:
    desk = load_desk(DESK)
    state = desk.initial_portfolio(AT)
    reports = {p.id: evaluate_pool(desk, p.id, state) for p in desk.pools}
    return desk, state, reports


def test_marginal_rate_segments_with_tiers_apply_like_brackets() -> None:
    # BTC: 95 % to 20 M, 92.5 % to 50 M; holding 19 M, adding 3 M → 1 M at 95 %, 2 M at 92.5 %
    rate = CollateralRate(
        tiers=(
            CollateralTier(from_usd=Decimal(0), to_usd=Decimal(20_000_000), rate=Decimal("0.95")),
            CollateralTier(
                from_usd=Decimal(20_000_000), to_usd=Decimal(50_000_000), rate=Decimal("0.925")
            ),
        )
    )
    segs = marginal_rate_segments(rate, Decimal(19_000_000), Decimal(3_000_000))
    assert segs == [(Decimal(1_000_000), Decimal("0.95")), (Decimal(2_000_000), Decimal("0.925"))]


def test_marginal_rate_segments_with_loan_repay_at_full_rate_first() -> None:
    segs = marginal_rate_segments(CollateralRate.flat("0.9"), Decimal(-100), Decimal(300))
    assert segs == [(Decimal(100), Decimal(1)), (Decimal(200), Decimal("0.9"))]


def test_sources_with_pm_pool_include_in_place_doge_swap_at_net_credit(
    desk_state: DeskState,
) -> None:
    desk, state, reports = desk_state
    built = routing_input_from_state(desk, state, reports, ["sim-a.pm"], deadline_s=60.0)
    by_id = {s.id: s for s in built.input.sources}
    swap = by_id["sim-a.pm:a.margin.doge-usdt"]
    assert swap.tier is Tier.IN_PRODUCT
    assert swap.mode is SourceMode.SWAP
    # DOGE at 50 % → USDT at 100 %: credit = (1 − bps/10⁴)·1 − 0.5 per USD converted
    # 3 M DOGE at 0.25 = 750k USD: the first two book levels (250k at 8 bps, 500k of 750k at 20)
    assert [round(g.credit_per_usd, 6) for g in swap.segments] == [0.4992, 0.498]
    assert [g.width_usd for g in swap.segments] == [250_000.0, 500_000.0]
    assert [g.cost_per_usd for g in swap.segments] == [0.0008, 0.002]
    direct = by_id["sim-a.pm:a.spot-margin.usdt"]
    assert direct.tier is Tier.TRANSFER
    assert direct.per_request_usd == 1_000_000.0
    assert "preauth:a.spot-margin.usdt" in direct.groups
    assert "preauth-group:sim-a-hot" in direct.groups
    assert built.input.shared_limits_usd["preauth-group:sim-a-hot"] == 6_000_000.0
    # the pre-authorised on-chain leg from sim-b becomes a two-leg source, 20 min + 1 s away
    two_leg = by_id["sim-a.pm:ba.onchain.usdt+a.spot-margin.usdt"]
    assert two_leg.latency_s == 1201.0
    assert built.notes == ()


def test_sources_with_route_out_of_a_pool_carry_origin_headroom(desk_state: DeskState) -> None:
    desk, state, reports = desk_state
    built = routing_input_from_state(desk, state, reports, ["sim-b.opt"], deadline_s=60.0)
    src = {s.id: s for s in built.input.sources}["sim-b.opt:b.um-options.usdt"]
    assert src.origin_pool == "sim-b.um"
    um = reports["sim-b.um"]
    call = Decimal(str(desk.pool("sim-b.um").thresholds.call))  # 1.6 in the example desk
    expected = float(um.adjusted_equity_usd - call * um.mm_usd)
    assert built.input.origin_headroom_usd["sim-b.um"] == pytest.approx(max(0.0, expected))


def test_route_with_two_pools_jointly_never_overdraws_a_balance(desk_state: DeskState) -> None:
    desk, state, reports = desk_state
    built = routing_input_from_state(
        desk,
        state,
        reports,
        ["sim-b.um", "sim-b.opt"],
        deadline_s=60.0,
        deficit_override_usd={"sim-b.um": 1_200_000.0, "sim-b.opt": 1_200_000.0},
    )
    plan = Router().route(built.input)
    spot_total = sum(
        (
            a.amount_usd
            for a in plan.allocations
            if a.source.endswith("b.spot-um.usdt") or a.source.endswith("b.spot-options.usdt")
        ),
        Decimal(0),
    )
    assert spot_total <= Decimal(1_600_000)  # sim-b spot holds 1.6 M USDT
    for call in plan.calls:
        assert call.credit_usd >= call.deficit_usd or call.uncovered_usd > 0


def test_sources_with_unknown_pool_is_refused(desk_state: DeskState) -> None:
    desk, state, reports = desk_state
    with pytest.raises(Exception, match="unknown pool"):
        routing_input_from_state(desk, state, reports, ["nope"], deadline_s=60.0)
    with pytest.raises(DataError):
        routing_input_from_state(desk, state, reports, [], deadline_s=60.0)


RUNNER = CliRunner()


def test_cli_route_with_problem_file_prints_plan_json() -> None:
    res = RUNNER.invoke(app, ["route", "--problem", str(ROOT / "examples" / "route-problem.json")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "optimal"
    assert out["cost_usd"] == "0.25000000"


def test_cli_route_with_policy_override_reports_other_policy() -> None:
    res = RUNNER.invoke(
        app,
        ["route", "--problem", str(ROOT / "examples" / "route-problem.json"), "--policy", "cost"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["policy"] == "cost"
    assert out["alternative"]["policy"] == "strict"


def test_cli_route_with_bad_problem_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = json.loads((ROOT / "examples" / "route-problem.json").read_text())
    bad["deadline_s"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    res = RUNNER.invoke(app, ["route", "--problem", str(path)])
    assert res.exit_code == 2
    assert "deadline_s" in res.output
    assert "Traceback" not in res.output


def test_cli_route_with_desk_and_deficit_plans_from_state() -> None:
    res = RUNNER.invoke(
        app, ["route", "--desk", str(DESK), "--pool", "sim-b.um", "--deficit", "250000"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "optimal"
    assert Decimal(out["credit_usd"]) >= 250000
    assert out["allocations"][0]["source"].startswith("sim-b.um:")


def test_cli_route_with_both_inputs_is_refused() -> None:
    res = RUNNER.invoke(
        app, ["route", "--problem", "x.json", "--desk", str(DESK), "--pool", "sim-b.um"]
    )
    assert res.exit_code == 2
    assert "exactly one" in res.output


def test_route_with_strict_joint_desk_calls_books_exact_amounts(desk_state: DeskState) -> None:
    # solver tolerance on the strict floors must neither shave a step off the maxed tier-2
    # conversion nor leave an extra step on the transfer: rounding snaps and trims to exact
    desk, state, reports = desk_state
    built = routing_input_from_state(
        desk,
        state,
        reports,
        ["sim-a.pm", "sim-b.opt"],
        deadline_s=60.0,
        deficit_override_usd={"sim-a.pm": 2_500_000.0, "sim-b.opt": 2_500_000.0},
    )
    plan = Router().route(built.input)
    got = amounts_by_source(plan)
    assert legs_over_cap(plan, built.input) == []
    # 3 M DOGE at 0.25: 750,000 USD, all of it (tier 2), credits 0.4992·250k + 0.498·500k
    assert got["sim-a.pm:a.margin.doge-usdt"] == Decimal("750000.00")
    # The rest, 2.5 M − 373,800 = 2,126,200 of credit, comes from sim-a's spot stablecoins:
    # both routes are free and equally fast, so the LP may take either mix (USDC credits at
    # 0.9999); whichever it takes must credit exactly the rest, not a step more or less.
    rate = {"usdt": Decimal(1), "usdc": Decimal("0.9999")}
    rest = sum(
        (got.get(f"sim-a.pm:a.spot-margin.{a}", Decimal(0)) * r for a, r in rate.items()),
        Decimal(0),
    )
    assert rest.quantize(Decimal("0.01")) == Decimal("2126200.00")
    assert plan.cost_usd == Decimal("1200")  # 8 bps of 250k + 20 bps of 500k
    outcome = {c.call: c for c in plan.calls}
    assert outcome["sim-a.pm"].uncovered_usd == 0
    # sim-b.opt: all of sim-b spot, then sim-b.um only down to its own call level; the
    # on-chain leg from sim-a takes 20 min, past the 60 s deadline.
    assert got["sim-b.opt:b.spot-options.usdt"] == Decimal("1600000")
    # ... in two requests: the route and its allow-list entry take 1,000,000 USD per transfer
    spot = [a for a in plan.allocations if a.source == "sim-b.opt:b.spot-options.usdt"]
    assert [(a.amount_usd, a.requests, a.eta_s) for a in spot] == [
        (Decimal(1_000_000), 1, 1.0),
        (Decimal(600_000), 1, 1.5),  # the second request half a second later (2 per second)
    ]
    assert plan.status == "partial"
    assert (
        outcome["sim-b.opt"].uncovered_usd == Decimal("2500000") - outcome["sim-b.opt"].credit_usd
    )


def test_sources_with_route_missing_from_allow_list_are_left_out_and_noted(
    desk_state: DeskState,
) -> None:
    desk, state, reports = desk_state
    desk = desk.model_copy(
        update={"preauth": tuple(p for p in desk.preauth if p.route != "ba.onchain.usdt")}
    )
    built = routing_input_from_state(desk, state, reports, ["sim-a.pm"], deadline_s=60.0)
    assert all("ba.onchain.usdt" not in s.id for s in built.input.sources)
    assert any("ba.onchain.usdt" in n for n in built.notes)


def desk_without_allow_list(tmp_path: Path) -> Path:
    """The example desk with its pre-authorised allow-list cut off: every route is left out,
    so no source can reach any pool."""
    text = DESK.read_text()
    path = tmp_path / "no-allow-list.toml"
    path.write_text(text[: text.index("# --- pre-authorised allow-list")])
    return path


def test_cli_route_with_desk_pool_no_source_reaches_prints_infeasible_plan(
    tmp_path: Path,
) -> None:
    desk = desk_without_allow_list(tmp_path)
    res = RUNNER.invoke(
        app, ["route", "--desk", str(desk), "--pool", "sim-b.um", "--deficit", "1000"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["status"] == "infeasible"
    assert out["uncovered_usd"] == "1000.00000000"
    assert out["allocations"] == []
    assert out["escalation"]["uncovered_usd"] == "1000.00000000"
    # deficit = r*·MM − E with r* = target·(1 + buffer_frac): MM must fall by 1000 / r*
    th = load_desk(DESK).pool("sim-b.um").thresholds
    target = Decimal(repr(th.target * (1 + th.buffer_frac)))
    reduction = Decimal(out["calls"][0]["suggested_reduction"]["mm_reduction_usd"])
    assert reduction == (Decimal(1000) / target).quantize(Decimal("1e-8"))
    notes = out["notes"]
    assert any("b.spot-um.usdt has no pre-authorisation entry" in n for n in notes)
    assert "pool sim-b.um: no candidate source holds collateral that can reach it" in notes


def test_sources_with_pool_no_source_reaches_build_an_input_and_a_reason(
    desk_state: DeskState,
) -> None:
    desk, state, reports = desk_state
    desk = desk.model_copy(update={"preauth": ()})
    built = routing_input_from_state(
        desk, state, reports, ["sim-a.pm"], deadline_s=60.0, deficit_override_usd={"sim-a.pm": 5e5}
    )
    assert built.input.sources == ()
    plan = Router().route(built.input, notes=built.notes)
    assert plan.status == "infeasible"
    assert plan.uncovered_usd == Decimal("500000.0")
    assert plan.calls[0].mm_reduction_usd is not None
    assert "pool sim-a.pm: no candidate source holds collateral that can reach it" in plan.notes


def _pmr_route(*args: str, hash_seed: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "route", *args],
        capture_output=True,
        env=env,
        check=False,
        cwd=ROOT,
    )


def test_cli_route_with_as_of_prints_byte_identical_json_across_runs() -> None:
    args = ("--desk", str(DESK), "--pool", "sim-a.pm", "--pool", "sim-b.opt")
    args += ("--deficit", "2500000", "--as-of", "2026-11-27T00:00:00Z")
    first = _pmr_route(*args, hash_seed="1")
    second = _pmr_route(*args, hash_seed="2")
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout == second.stdout
    out = json.loads(first.stdout)
    assert out["solve_ms"] is None
    assert "solve_ms" not in out["alternative"]
    assert out["status"] == "partial"


@pytest.mark.parametrize(
    ("value", "message"),
    [("yesterday", "ISO-8601"), ("2026-11-27T00:00:00", "timezone")],
)
def test_cli_route_with_bad_as_of_exits_2_naming_it(value: str, message: str) -> None:
    res = RUNNER.invoke(app, ["route", "--desk", str(DESK), "--pool", "sim-b.um", "--as-of", value])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_cli_route_with_table_prints_labelled_formatted_summary() -> None:
    res = RUNNER.invoke(
        app, ["route", "--problem", str(ROOT / "examples" / "route-problem.json"), "--table"]
    )
    assert res.exit_code == 0, res.output
    text = res.stdout
    for row in (
        "cost (USD)",
        "0.250000",
        "credit (USD)",
        "1,029.8000",
        "uncovered (USD)",
        "cost policy would cost (USD)",
        "solved in ",
    ):
        assert row in text, row
    assert "cost_usd" not in text
    assert "1029.8 " not in text


def test_sources_with_dust_balance_leave_it_out_instead_of_failing(
    desk_state: DeskState,
) -> None:
    # 1e-12 USDT in sim-b spot: below the 1e-8 USD booking resolution. The desk's plan must
    # not fail on a dust balance (a Segment that narrow is refused); the source is left out.
    import dataclasses

    desk, state, reports = desk_state
    balances = tuple(
        dataclasses.replace(b, amount=Decimal("1e-12"))
        if (b.venue, b.wallet.value, b.asset.code) == ("sim-b", "spot", "USDT")
        else b
        for b in state.balances
    )
    dusty = dataclasses.replace(state, balances=balances)
    built = routing_input_from_state(
        desk, dusty, reports, ["sim-b.um"], deadline_s=60.0, deficit_override_usd={"sim-b.um": 1e4}
    )
    assert all("b.spot-um.usdt" not in s.id or "onchain" in s.id for s in built.input.sources)
    plan = Router().route(built.input, notes=built.notes)
    assert plan.method == "optimiser"


def test_sources_share_the_venue_cap_and_a_cold_route_its_quota(desk_state: DeskState) -> None:
    """The router sees what the executor's gate enforces: a venue's rolling cap over all its
    routes, and a cold route's daily quota on top of its own rolling cap."""
    desk, state, reports = desk_state
    used = {"venue:sim-b": Decimal(5_900_000), "ba.onchain.usdt": Decimal(400_000)}
    built = routing_input_from_state(
        desk, state, reports, ["sim-a.pm"], deadline_s=3600.0, used_24h_usd=used,
        deficit_override_usd={"sim-a.pm": 3_000_000.0},
    )  # fmt: skip
    inp = built.input
    cold = next(s for s in inp.sources if "ba.onchain.usdt" in s.id)
    assert "preauth-venue:sim-b" in cold.groups
    assert inp.shared_limits_usd["preauth-venue:sim-b"] == pytest.approx(100_000.0)
    quota = desk.route("ba.onchain.usdt").cold_quota_usd_per_day  # type: ignore[union-attr]
    assert inp.shared_limits_usd["preauth:ba.onchain.usdt"] <= float(quota) - 400_000.0
    plan = Router().route(inp)
    from_b = sum(
        (a.amount_usd for a in plan.allocations if "ba.onchain.usdt" in a.source),
        Decimal(0),
    )
    assert from_b <= Decimal(100_000)  # the venue cap binds before the quota
