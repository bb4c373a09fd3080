"""``pmr margin-call`` and ``pmr execute``: detect, plan and execute a margin call on a desk.

Orchestration only: detection and planning are ``core.execution.margin_call``, the run is
``core.execution.executor.Executor`` with the desk's pre-authorisation as its gate
(``core.execution.gate``), its re-planner and verifier ``core.execution.cure.DeskCure``.

* ``pmr margin-call --desk FILE --pool ID``: read every venue, margin the pool; at or below its
  call level, open the call, plan version 1, execute it leg by leg (each step printed as it
  happens) and verify the pool from the venues; a summary ends it. ``--dry-run`` plans and
  prints, and sends and records nothing. ``--shock ETH=-0.26,BTC=0.08`` moves the simulated
  venues' prices first (a simulated desk only), so the example desk shows a real call.
* ``pmr execute --plan CALL_ID[:VERSION]`` runs (or finishes) a recorded plan on the desk's
  venues; ``pmr execute --resume`` finishes every non-final leg in the store. A pre-funding
  (``pmr prefund --apply``, id ``pf-…``) is run and resumed the same way (exit 0: applied).

The simulated venues run in this process on a manual clock started at the wall clock (or at
``--as-of``), so waiting for a credit or a lookup window costs no real time. Exit codes: 0 done
(also: the pool is above its call level, nothing to do), 1 the call was escalated or legs are
left in flight, 2 bad input (unknown pool, call or plan; a cured call; a tampered plan row),
with nothing sent.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import ConfigError
from flows.cli_audit import (
    DEFAULT_KEY_ENV,
    KeyBlockOption,
    KeyEnvOption,
    UnkeyedOption,
    UrlOption,
    store_engine,
)
from flows.cli_common import AsOfOption, display_path, handles_pmr_errors, out, parse_as_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.clock import Clock
    from core.config import DeskConfig
    from core.execution.cure import DeskCure
    from core.execution.executor import ExecutionReport, Executor
    from core.ledger.chain import AuditKey
    from core.routing.plan import Plan
    from core.venues.factory import DeskVenues

__all__ = [
    "EXIT_NOT_CURED",
    "desk_executor",
    "desk_run",
    "execute_cmd",
    "margin_call_cmd",
    "parse_plan_ref",
    "register",
]

EXIT_NOT_CURED = 1

DeskOption = Annotated[
    Path, typer.Option("--desk", metavar="FILE", help="The desk's TOML file.", show_default=False)
]
ShockOption = Annotated[
    str | None,
    typer.Option(
        "--shock",
        metavar="MOVES",
        help="Move the simulated venues' prices first, e.g. 'ETH=-0.26,BTC=0.08' "
        "(as `pmr demo --shock`; simulated desks only).",
        show_default=False,
    ),
]


def parse_plan_ref(text: str) -> tuple[str, int | None]:
    """``CALL_ID[:VERSION]`` → (call id, version or None for the latest).

    >>> parse_plan_ref("mc-20261127-000000000-0101010101010101:2")
    ('mc-20261127-000000000-0101010101010101', 2)
    >>> parse_plan_ref("mc-x")
    ('mc-x', None)
    """
    call, sep, version = text.strip().partition(":")
    if not call:
        raise ConfigError("--plan must be CALL_ID[:VERSION]", plan=text)
    if not sep:
        return call, None
    if not version.isdigit() or int(version) < 1:
        raise ConfigError("--plan version must be a whole number >= 1", plan=text)
    return call, int(version)


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False)


def _check_shock(desk: DeskConfig, shock: str | None) -> dict[str, float] | None:
    if shock is None:
        return None
    from flows.demo import check_shock, parse_shock

    moves = parse_shock(shock)
    check_shock(desk, moves)
    live = [v.name for v in desk.venues if v.kind != "sim"]
    if live:
        raise ConfigError(
            f"--shock moves simulated prices only; venue(s) {', '.join(live)} are live"
        )
    return moves


def _clock(desk: DeskConfig, as_of: datetime | None) -> Clock:
    """A manual clock for an all-simulated desk (from the wall clock, or ``as_of``), else the
    wall clock (``--as-of`` is refused for a live desk: its venues keep real time)."""
    from core.clock import ManualClock, SystemClock

    sim = all(v.kind == "sim" for v in desk.venues)
    if as_of is not None:
        if not sim:
            raise ConfigError("--as-of needs an all-simulated desk: live venues keep real time")
        return ManualClock(start_ns=round(as_of.timestamp() * 1e9))
    clock = SystemClock()
    return ManualClock(start_ns=clock.timestamp_ns()) if sim else clock


@contextmanager
def desk_run(
    desk: DeskConfig, url: str | None, moves: Mapping[str, float] | None, as_of: datetime | None
) -> Iterator[tuple[Engine, str, DeskVenues, Clock]]:
    """The store, the desk's venues (warmed up, shocked) and the clock, for one command."""
    from core.venues.factory import build_desk_venues

    clock = _clock(desk, as_of)
    with store_engine(url) as (engine, where), build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for sim in dv.engines.values():
            if moves:
                sim.prices.apply_scenario(dict(moves))
        yield engine, where, dv, clock


def desk_executor(
    desk: DeskConfig, engine: Engine, dv: DeskVenues, clock: Clock, cure: DeskCure | None,
    key: AuditKey | None,
) -> Executor:  # fmt: skip
    """The executor of one command: the desk's gate and plan check, each step printed; with
    ``cure`` its verifier and re-planner (a pre-funding uses neither)."""
    from core.execution.cure import check_plan_against_desk
    from core.execution.executor import Executor
    from core.execution.gate import desk_gate

    owner = f"pmr@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    return Executor(
        engine, dv.venues, clock, owner=owner, gate=desk_gate(desk), audit_key=key,
        verifier=None if cure is None else cure.verify,
        replanner=None if cure is None else cure.replan,
        plan_check=lambda r: check_plan_against_desk(desk, r), on_step=_say,
    )  # fmt: skip


def _num(value: Decimal) -> str:
    return format(value.normalize(), ",f") if value else "0"


def _print_plan(plan: Plan, *, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in ("step", "source", "kind", "amount", "route", "from -> to", "USD"):
        table.add_column(name, justify="right" if name in ("amount", "USD") else "left")
    for i, a in enumerate(plan.allocations):
        for leg in a.legs:
            table.add_row(
                f"{i}/{leg.leg_no}",
                a.source,
                leg.kind.value,
                f"{_num(leg.amount)} {leg.asset}",
                leg.route_id or "-",
                f"{leg.venue}/{leg.from_wallet.value} -> "
                f"{leg.destination_venue}/{leg.to_wallet.value}",
                f"{leg.amount_usd:,.2f}",
            )
    out.print(table)
    outcome = plan.calls[0] if plan.calls else None
    if outcome is not None:
        _say(
            f"plan: {plan.status}, deficit {outcome.deficit_usd:,.0f} USD, credited "
            f"{outcome.credit_usd:,.0f} USD, cost {outcome.cost_usd:,.2f} USD, uncovered "
            f"{outcome.uncovered_usd:,.0f} USD"
        )


def _print_report(report: ExecutionReport) -> bool:
    """The summary of one call's run; True when the call is cured (a pre-funding: applied)
    and every leg final."""
    from rich.table import Table

    from core.ledger.vocab import CallStatus

    _say(f"call {report.margin_call_id}")
    table = Table(title="Legs", title_justify="left")
    for name in ("leg", "source", "kind", "amount", "state", "attempts", "latency", "note"):
        right = name in ("amount", "attempts", "latency")
        table.add_column(name, justify="right" if right else "left")
    for leg in report.legs:
        table.add_row(
            f"v{leg.plan_version}/{leg.step_no}/{leg.leg_no}",
            leg.source_id,
            leg.kind,
            f"{_num(leg.amount)} {leg.asset}",
            leg.state.value,
            str(leg.attempts),
            "-" if leg.latency_ms is None else f"{leg.latency_ms:.0f} ms",
            leg.note,
        )
    out.print(table)
    counts: dict[str, int] = {}
    for leg in report.legs:
        counts[leg.state.value] = counts.get(leg.state.value, 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
    v = report.verification
    if report.call_status in (CallStatus.APPLIED, CallStatus.PARTIAL):
        verdict = "a pre-funding: not re-planned, no ratio to verify"
    elif v is None:
        verdict = "not verified (legs in flight: `pmr execute --resume` finishes them)"
    else:
        ratio = "-" if v.ratio is None else f"{v.ratio:.4f}"
        verdict = f"ratio {ratio} vs target {v.target_ratio:.4f}, restored: " + (
            "yes" if v.restored else "no"
        )
    versions = ", ".join(f"v{n}" for n in report.versions)
    _say(f"{report.call_status}; plan {versions}; {len(report.legs)} leg(s): {states}; {verdict}")
    done = (CallStatus.CURED, CallStatus.APPLIED)
    return report.call_status in done and report.all_final


@handles_pmr_errors
def margin_call_cmd(
    desk_file: DeskOption,
    pool: Annotated[
        str, typer.Option("--pool", metavar="ID", help="The pool to cure.", show_default=False)
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and print; send and record nothing.")
    ] = False,
    shock: ShockOption = None,
    as_of: AsOfOption = None,
    url: UrlOption = None,
    key_env: KeyEnvOption = DEFAULT_KEY_ENV,
    key_block: KeyBlockOption = None,
    unkeyed: UnkeyedOption = False,
) -> None:
    """Detect, plan and execute a margin call on one pool of a desk, from its venues.

    Reads every venue and margins the pool; at or below its call level, opens the call,
    plans the cure, executes it leg by leg (pre-authorised, exactly once; each step printed
    as it happens) and re-prices the pool from the venues. Exit 0: cured, or no call due;
    1: escalated or legs left in flight; 2: bad input, nothing sent.
    """
    from core.config import load_desk
    from flows.audit_key import resolve_audit_key

    at = parse_as_of(as_of)
    desk = load_desk(desk_file)
    pools = [p.id for p in desk.pools]
    if pool not in pools:
        raise ConfigError(f"unknown pool {pool!r}; the desk's pools: {', '.join(pools)}")
    moves = _check_shock(desk, shock)
    key = resolve_audit_key(key_env=key_env, key_block=key_block, unkeyed=unkeyed, required=False)
    from core.execution.cure import DeskCure
    from core.execution.margin_call import detect_by_pool, open_call, plan_call

    with desk_run(desk, url, moves, at) as (engine, where, dv, clock):
        cure = DeskCure(desk, dv.venues, clock, engine=engine)
        reports, portfolios, due = detect_by_pool(cure)
        pf = portfolios[pool]  # the pool's: venues that disagree on a price are not merged
        _say(f"desk: {display_path(desk_file)}\nstore: {where}")
        r = reports[pool]
        call_level = desk.pool(pool).thresholds.call
        ratio = "-" if r.ratio is None else f"{r.ratio:.4f}"
        d = next((x for x in due if x.pool_id == pool), None)
        if d is None:
            _say(f"pool {pool}: ratio {ratio} is above its call level {call_level}: no margin call")
            return
        _say(
            f"pool {pool}: ratio {ratio} at or below its call level {call_level}: margin call, "
            f"deficit {d.deficit_usd:,.0f} USD to target {d.target_ratio}"
        )
        if dry_run:
            _dry_run(engine, cure, pool, reports, pf, clock)
            return
        call, _ = open_call(engine, cure, d, clock=clock, audit_key=key)
        recorded, created = plan_call(engine, cure, call, reports, pf, clock=clock, audit_key=key)
        _say(f"call {call.id} opened" if created else f"call {call.id}: its plan is on record")
        _print_plan(recorded.plan, title=f"Plan v{recorded.version}")
        report = desk_executor(desk, engine, dv, clock, cure, key).execute(call.id)
    if not _print_report(report):
        raise typer.Exit(EXIT_NOT_CURED)


def _dry_run(
    engine: Engine, cure: DeskCure, pool: str, reports: Mapping[str, object], pf: object,
    clock: Clock,
) -> None:  # fmt: skip
    from core.execution.gate import router_usage
    from core.execution.planning import plan_inputs
    from core.ledger.store import session_scope
    from core.routing import Router

    with session_scope(engine) as s:
        used = router_usage(s, cure.desk, now=clock.now())
    planned = plan_inputs(
        cure.desk, pf, [pool], deadline_s=cure.deadline_s, reports=reports,  # type: ignore[arg-type]
        used_24h_usd=used,
    )  # fmt: skip
    plan = Router().route(planned.input, notes=planned.notes)
    _print_plan(plan, title="Plan (dry run)")
    _say("Dry run: nothing was sent or recorded.")


@handles_pmr_errors
def execute_cmd(
    desk_file: DeskOption,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            "--call",
            metavar="CALL_ID[:VERSION]",
            help="The recorded plan to run: a margin call's latest, or the version given.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish every non-final leg in the store.")
    ] = False,
    shock: ShockOption = None,
    as_of: AsOfOption = None,
    url: UrlOption = None,
    key_env: KeyEnvOption = DEFAULT_KEY_ENV,
    key_block: KeyBlockOption = None,
    unkeyed: UnkeyedOption = False,
) -> None:
    """Run or finish a recorded plan on the desk's venues, or resume every unfinished leg.

    A leg with an attempt on record is looked up before anything else and resent (under the
    same key) only once its absence is proven. Exit 0: cured (or nothing to resume); 1:
    escalated or legs left in flight; 2: bad input (unknown call or plan, a call no longer
    open, a tampered plan row), nothing sent.
    """
    from core.config import load_desk
    from flows.audit_key import resolve_audit_key
    from flows.cli_common import require_one_of

    require_one_of({"--plan": plan, "--resume": resume or None})
    ref = parse_plan_ref(plan) if plan is not None else None
    at = parse_as_of(as_of)
    desk = load_desk(desk_file)
    moves = _check_shock(desk, shock)
    key = resolve_audit_key(key_env=key_env, key_block=key_block, unkeyed=unkeyed, required=False)
    from core.execution.cure import DeskCure

    with desk_run(desk, url, moves, at) as (engine, where, dv, clock):
        _say(f"desk: {display_path(desk_file)}\nstore: {where}")
        cure = DeskCure(desk, dv.venues, clock, engine=engine)
        ex = desk_executor(desk, engine, dv, clock, cure, key)
        if ref is not None:
            reports = [ex.execute(*ref)]
        else:
            reports = ex.resume()
            if not reports:
                _say("nothing to resume: every leg in the store is final")
                return
    ok = [_print_report(r) for r in reports]
    if not all(ok):
        raise typer.Exit(EXIT_NOT_CURED)


def register(app: typer.Typer) -> None:
    """Add ``pmr margin-call`` and ``pmr execute`` to the CLI."""
    app.command("margin-call")(margin_call_cmd)
    app.command("execute")(execute_cmd)
