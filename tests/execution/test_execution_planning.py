"""The one state → reports → routing-input pipeline, the plan it makes recorded per margin call
and read back unchanged, and the one venue status → ledger state mapping."""

from __future__ import annotations

import doctest
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

import core.execution.planning
import core.execution.states
from core.clock import ManualClock
from core.config import load_desk
from core.execution.planning import plan_inputs, pool_reports
from core.execution.states import ledger_state_of
from core.ledger.keys import leg_key, new_margin_call_id
from core.ledger.plans import load_plan, record_margin_call, record_plan
from core.ledger.store import ensure_venue
from core.ledger.tables import MarginCallRow
from core.ledger.transfers import intent_for_leg, record_transfer_intent
from core.ledger.vocab import CallStatus, TransferState, VenueMode
from core.margin.levels import margin_calls_due
from core.routing import Router
from core.routing.jsonio import plan_to_json
from core.routing.plan import Plan
from core.stress.shocks import shock_portfolio
from core.venues.reports import VenueTransferStatus
from flows.cli import app
from flows.demo import DEFAULT_SHOCK, parse_shock

ROOT = Path(__file__).resolve().parents[2]
DESK = ROOT / "examples" / "desk.toml"
AT = datetime(2026, 11, 27, tzinfo=UTC)


def test_plan_inputs_prices_every_pool_and_covers_the_pools_asked() -> None:
    desk = load_desk(DESK)
    state = desk.initial_portfolio(AT)
    planned = plan_inputs(
        desk, state, ["sim-b.um"], deadline_s=60, deficit_override_usd={"sim-b.um": 250_000}
    )
    assert list(planned.reports) == ["sim-a.pm", "sim-b.um", "sim-b.opt"]
    assert [(c.id, c.deficit_usd, c.deadline_s) for c in planned.input.calls] == [
        ("sim-b.um", 250_000.0, 60.0)
    ]
    assert {s.id for s in planned.input.sources} == {
        "sim-b.um:b.spot-um.usdt",
        "sim-b.um:ab.onchain.usdt+b.spot-um.usdt",
    }
    given = pool_reports(desk, state)
    again = plan_inputs(desk, state, ["sim-b.um"], deadline_s=60, reports=given)
    assert again.reports == given


def test_plan_inputs_with_call_ids_name_each_call_and_its_sources_by_margin_call() -> None:
    desk = load_desk(DESK)
    planned = plan_inputs(
        desk, desk.initial_portfolio(AT), ["sim-a.pm", "sim-b.opt"], deadline_s=60,
        deficit_override_usd={"sim-a.pm": 1e5, "sim-b.opt": 1e5},
        call_ids={"sim-a.pm": "mc-20261127-000000000-00000000000000aa"},
    )  # fmt: skip
    assert [c.id for c in planned.input.calls] == [
        "mc-20261127-000000000-00000000000000aa",
        "sim-b.opt",
    ]
    assert [c.pool for c in planned.input.calls] == ["sim-a.pm", "sim-b.opt"]
    serves = {s.calls for s in planned.input.sources}
    assert serves == {
        frozenset({"mc-20261127-000000000-00000000000000aa"}),
        frozenset({"sim-b.opt"}),
    }


def test_pmr_route_with_desk_plans_what_the_pipeline_plans() -> None:
    """The CLI is orchestration only: its JSON is the pipeline's plan."""
    res = CliRunner().invoke(
        app,
        ["route", "--desk", str(DESK), "--pool", "sim-b.opt", "--deficit", "300000",
         "--as-of", AT.isoformat()],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    desk = load_desk(DESK)
    planned = plan_inputs(
        desk, desk.initial_portfolio(AT), ["sim-b.opt"], deadline_s=60,
        deficit_override_usd={"sim-b.opt": 300_000.0},
    )  # fmt: skip
    expected = plan_to_json(Router().route(planned.input, notes=planned.notes), timings=False)
    assert json.loads(res.stdout) == expected
    legs = expected["allocations"][0]["legs"]
    assert [(g["kind"], g["route_id"], g["amount"]) for g in legs] == [
        ("internal", "b.spot-options.usdt", "300000")
    ]


def _per_call(plan: Plan, call: str) -> Plan:
    """What the store keeps of a joint plan for one of its calls."""
    (outcome,) = [c for c in plan.calls if c.call == call]
    return replace(
        plan,
        allocations=plan.for_call(call),
        calls=(outcome,),
        status="optimal" if outcome.uncovered_usd == 0 else "partial",
        cost_usd=outcome.cost_usd,
        credit_usd=outcome.credit_usd,
        uncovered_usd=outcome.uncovered_usd,
        other_policy=None,
    )


def test_demo_cure_recorded_per_margin_call_reads_back_unchanged_with_leg_keys(
    store: Engine,
) -> None:
    """The demo's shock breaches two pools; each gets a margin call, the joint plan is recorded
    as version 1 of each, read back equal, and every leg's intent carries leg_key(...)."""
    desk = load_desk(DESK)
    state = desk.initial_portfolio(AT)
    shocked = shock_portfolio(
        state, desk.instrument_map(), parse_shock(DEFAULT_SHOCK), vol_up_frac=0.3
    )
    reports = pool_reports(desk, shocked)
    pools = [due.pool_id for due in margin_calls_due(desk, reports)]
    assert pools == ["sim-a.pm", "sim-b.opt"]
    clock = ManualClock(1_795_737_600_000_000_000)  # 2026-11-27 00:00 UTC
    calls = {pool: new_margin_call_id(clock) for pool in pools}
    planned = plan_inputs(desk, shocked, pools, deadline_s=60, reports=reports, call_ids=calls)
    plan = Router().route(planned.input, notes=planned.notes)
    assert plan.executable
    alternative = plan.alternative  # solved now, so the store keeps it
    with Session(store) as s:
        for venue in ("sim-a", "sim-b"):
            ensure_venue(s, venue, exchange="sim", mode=VenueMode.SIM, at=AT)
        for pool, call in calls.items():
            record_margin_call(
                s,
                MarginCallRow(
                    id=call, pool_id=pool, venue_id=desk.pool(pool).venue,
                    status=CallStatus.OPEN.value, raised_at=AT, target_ratio=Decimal(2),
                    deficit_usd=Decimal(1),
                ),
            )  # fmt: skip
            recorded, created = record_plan(s, call, plan, version=1, at=AT)
            assert created
            for step_no, step in enumerate(recorded.plan.allocations):
                for leg in step.legs:
                    intent = intent_for_leg(recorded, step_no, leg.leg_no)
                    assert intent.key == leg_key(call, 1, step_no, leg.leg_no)
                    record_transfer_intent(s, intent, at=AT)
        s.commit()
    with Session(store) as s:
        for call in calls.values():
            loaded = load_plan(s, call)
            assert loaded is not None
            assert replace(loaded.plan, other_policy=None) == _per_call(plan, call)
            assert loaded.plan.alternative == alternative
    doge = next(a for a in plan.allocations if a.source.endswith("a.margin.doge-usdt"))
    assert [(g.kind.value, g.asset, g.to_asset) for g in doge.legs] == [
        ("margin_order", "DOGE", "USDT")
    ]


@pytest.mark.parametrize(
    ("venue", "ledger"),
    [
        (VenueTransferStatus.PENDING, TransferState.SENT),
        (VenueTransferStatus.CONFIRMED, TransferState.CONFIRMED),
        (VenueTransferStatus.FAILED, TransferState.FAILED),
        (VenueTransferStatus.NOT_FOUND_YET, TransferState.UNKNOWN),  # look again, never resend
        (VenueTransferStatus.NOT_FOUND, TransferState.FAILED),
        (VenueTransferStatus.AMBIGUOUS, TransferState.UNKNOWN),
    ],
)
def test_venue_status_maps_to_one_ledger_state(
    venue: VenueTransferStatus, ledger: TransferState
) -> None:
    assert ledger_state_of(venue) is ledger


def test_venue_statuses_never_map_to_states_only_the_ledger_gives() -> None:
    """``pending`` (before the request leaves) and ``refused`` (a gate) are ours, not a venue's."""
    reached = {ledger_state_of(v) for v in VenueTransferStatus}
    assert reached.isdisjoint({TransferState.PENDING, TransferState.REFUSED})
    assert len(list(VenueTransferStatus)) == 6  # a new venue status must be mapped above


def test_execution_docstring_examples_run_as_written() -> None:
    for module in (core.execution.planning, core.execution.states):
        result = doctest.testmod(module)
        assert result.attempted > 0, module.__name__
        assert result.failed == 0, module.__name__


def test_emitted_desk_problem_with_legs_plans_the_same_executable_plan(tmp_path: Path) -> None:
    """``--emit-problem`` writes the legs and budgets too: fed back with ``--problem``, the same
    problem (same fingerprint) gives the same executable plan."""
    runner = CliRunner()
    desk_args = ["route", "--desk", str(DESK), "--pool", "sim-a.pm", "--pool", "sim-b.opt",
                 "--deficit", "700000", "--as-of", AT.isoformat()]  # fmt: skip
    emitted = runner.invoke(app, [*desk_args, "--emit-problem"])
    assert emitted.exit_code == 0, emitted.output
    problem = json.loads(emitted.stdout)
    assert {g["kind"] for s in problem["sources"] for g in s["legs"]} == {
        "internal", "convert", "margin_order", "withdrawal",
    }  # fmt: skip
    path = tmp_path / "problem.json"
    path.write_text(emitted.stdout)
    from_desk = json.loads(runner.invoke(app, desk_args).stdout)
    from_file = json.loads(runner.invoke(app, ["route", "--problem", str(path)]).stdout)
    assert from_file["executable"] is True
    for key in ("problem_id", "allocations", "calls", "cost_usd", "status"):
        assert from_file[key] == from_desk[key], key
