"""``pmr demo``: the product's story on the example desk, offline, in one command.

1. the desk (venues, pools, free collateral, routes);
2. portfolio margin of every pool now, next to the siloed requirement (capital efficiency);
3. a sharp move (default: ETH −26 % and BTC +8 % with vols +30 %; on 2021-05-19 ETH fell > 40 %);
4. the pools it pushes below their ``call`` level become margin calls;
5. the router plans the cheapest, fastest cure for all of them jointly (strict policy: PnL
   first, then collateral in place, then pre-authorised transfers and swaps) and says what the
   ``cost`` policy would have cost;
6. the executor cures each call on the desk's simulated venues (their prices moved by the same
   shock), with an in-memory store: the answer to the first transfer is lost after the venue
   applied it (a timeout), and the executor finds it by lookup instead of resending it.
   ``dry_run`` stops after the plan.

Orchestration and printing only: margin is ``core.margin``, the shock ``core.stress.shocks``,
the plan ``core.routing``, the run ``core.execution``.

Every option is checked, the desk loaded and the shock applied before anything is printed, so a
typo (``ET=-0.3``) is an error, not a calm "nothing to cure". With ``as_of`` the story is valued
at that instant and prints nothing that depends on the wall clock (no solve time), so two runs
print the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError
from flows.cli_common import as_of_or_now, check_number, display_path, out

if TYPE_CHECKING:  # loaded when the demo runs, so `pmr --help` stays fast
    from rich.table import Table

    from core.config import DeskConfig
    from core.margin.report import MarginReport
    from core.routing.plan import Plan

__all__ = ["DEFAULT_SHOCK", "check_shock", "parse_shock", "run_demo"]

DEFAULT_SHOCK = "ETH=-0.26,BTC=0.08"


def parse_shock(text: str) -> dict[str, float]:
    """Parse ``"ETH=-0.25,BTC=0.1"`` into ``{"ETH": -0.25, "BTC": 0.1}``."""
    moves: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        asset, sep, value = part.partition("=")
        code = asset.strip().upper()
        try:
            if not sep:
                raise ValueError(part)
            move = float(value)
        except ValueError:
            raise ConfigError(
                "shock must look like ASSET=MOVE[,ASSET=MOVE] with MOVE a fraction (-0.25)",
                shock=text,
            ) from None
        if code in moves:
            raise ConfigError(f"shock moves {code} twice; give each asset once", shock=text)
        moves[code] = move
    if not moves:
        raise ConfigError("shock is empty", shock=text)
    return moves


def check_shock(desk: DeskConfig, moves: Mapping[str, float]) -> None:
    """Refuse a shock on an asset the desk does not price: it would move nothing, and the demo
    would calmly report that no pool breaches (``ET=-0.3`` for ``ETH``)."""
    priced = sorted(p.symbol for p in desk.prices if p.symbol in desk.assets)
    unknown = [a for a in moves if a not in priced]
    if unknown:
        raise ConfigError(
            f"shock moves {', '.join(unknown)}, which the desk does not price; "
            f"assets it prices: {', '.join(priced)}"
        )


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _margin_table(title: str, desk: DeskConfig, reports: Mapping[str, MarginReport]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("pool", "model", "adj. equity USD", "MM USD", "ratio", "call", "desk level"):
        table.add_column(col, justify="right" if "USD" in col or col in ("ratio",) else "left")
    table.add_column("venue band")
    table.add_column("standard MM USD", justify="right")
    table.add_column("capital eff.", justify="right")
    for pool in desk.pools:
        r = reports[pool.id]
        table.add_row(
            pool.id,
            r.model.value,
            _usd(r.adjusted_equity_usd),
            _usd(r.mm_usd),
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            f"{pool.thresholds.call}",
            r.desk_level.value,
            r.venue_band.value,
            _usd(r.standard_mm_usd),
            "-" if r.capital_efficiency is None else f"{r.capital_efficiency:.2f}x",
        )
    return table


def _plan_tables(plan: Plan) -> Sequence[Table]:
    from rich.table import Table

    calls = Table(title="Margin calls", title_justify="left")
    for col in ("call", "deficit USD", "credited USD", "cost USD", "uncovered USD", "USD per +1"):
        calls.add_column(col, justify="left" if col == "call" else "right")
    for c in plan.calls:
        calls.add_row(
            c.call,
            _usd(c.deficit_usd),
            _usd(c.credit_usd),
            f"{c.cost_usd:,.2f}",
            _usd(c.uncovered_usd),
            "-" if c.shadow_price_usd_per_usd is None else f"{c.shadow_price_usd_per_usd:.4f}",
        )
    steps = Table(title="Plan (in order of completion)", title_justify="left")
    for col in ("call", "source", "tier", "amount USD", "credit USD", "cost USD", "ETA s", "why"):
        steps.add_column(col, justify="right" if ("USD" in col or col == "ETA s") else "left")
    for a in plan.allocations:
        steps.add_row(
            a.call,
            a.source,
            str(a.tier),
            _usd(a.amount_usd),
            _usd(a.credit_usd),
            f"{a.cost_usd:,.2f}",
            f"{a.eta_s:g}",
            f"{a.mode}, bound by {a.binding}",
        )
    return calls, steps


def run_demo(
    desk_file: Path,
    *,
    shock: Mapping[str, float],
    vol_up_frac: float,
    deadline_s: float,
    as_of: datetime | None = None,
    dry_run: bool = False,
) -> Plan | None:
    """Print the story and return the plan (``None`` when the shock breaches no pool).

    ``as_of`` values the desk at that instant instead of now and leaves the solve time and the
    measured latencies out, so the output is byte-identical from run to run. ``dry_run`` plans
    only: nothing is executed, even on the simulator.
    """
    from core.config import load_desk

    check_number(vol_up_frac, "--vol-up", gt=-1.0)
    check_number(deadline_s, "--deadline", gt=0.0)
    desk = load_desk(desk_file)
    check_shock(desk, shock)
    # The engines load only once the options are known to be good.
    from core.execution.planning import plan_inputs, pool_reports
    from core.margin.levels import margin_calls_due
    from core.routing import Router
    from core.stress.shocks import shock_portfolio
    from flows.desk_summary import print_desk_summary

    at = as_of_or_now(as_of)
    state = desk.initial_portfolio(at)
    shocked = shock_portfolio(state, desk.instrument_map(), shock, vol_up_frac=vol_up_frac)
    now = pool_reports(desk, state)
    after = pool_reports(desk, shocked)

    print_desk_summary(desk, source=display_path(desk_file))
    out.print(f"Valued at {at.isoformat()}" + (" (--as-of)" if as_of is not None else ""))
    out.print(_margin_table("Portfolio margin now", desk, now))
    moves = ", ".join(f"{a} {m:+.0%}" for a, m in shock.items())
    out.print(_margin_table(f"After {moves}, vols {vol_up_frac:+.0%}", desk, after))

    calls = [due.pool_id for due in margin_calls_due(desk, after)]
    if not calls:
        out.print("No pool falls to its call level under this shock: nothing to cure.")
        return None
    out.print(f"Margin calls: {', '.join(calls)} (deadline {deadline_s:g} s, policy strict)")
    planned = plan_inputs(desk, shocked, calls, deadline_s=deadline_s, reports=after)
    plan = Router().route(planned.input, notes=planned.notes)
    for table in _plan_tables(plan):
        out.print(table)
    alt = plan.alternative
    alt_text = "" if alt is None else f"; the {alt.policy.value} policy would cost "
    if alt is not None:
        alt_text += "-" if alt.cost_usd is None else f"{alt.cost_usd:,.2f} USD ({alt.status})"
    solved = "" if as_of is not None else f", solved in {plan.solve_ms:.1f} ms"
    out.print(
        f"plan: {plan.status}, cost {plan.cost_usd:,.2f} USD, "
        f"uncovered {plan.uncovered_usd:,.0f} USD{solved}{alt_text}"
    )
    if dry_run:
        out.print(
            "Dry run: nothing was sent or recorded. Recorded for a margin call, each leg of each "
            "step gets its idempotency key; `pmr route --desk ... --pool ID` prints the legs as "
            "JSON."
        )
        return plan
    _execute_on_simulator(desk, shock, at, timed=as_of is None)
    return plan


_MS = re.compile(r"(?: in| after)? \d+ ms| \(\d+ ms\)")


def _execute_on_simulator(
    desk: DeskConfig, shock: Mapping[str, float], at: datetime, *, timed: bool
) -> None:
    """Cure each call on the desk's simulated venues with an in-memory store; the first
    transfer's answer is lost after the venue applied it (``FaultKind.TIMEOUT_APPLIED``)."""
    from core.clock import ManualClock
    from core.execution.cure import DeskCure, check_plan_against_desk
    from core.execution.executor import Executor
    from core.execution.gate import desk_gate
    from core.execution.margin_call import detect, open_call, plan_call
    from core.ledger.store import init_db, make_engine
    from core.routing.legs import LegKind
    from core.venues.factory import build_desk_venues
    from core.venues.sim.faults import FaultKind

    def say(line: str) -> None:
        out.print(line if timed else _MS.sub("", line), markup=False, highlight=False)

    engine = make_engine("sqlite://")
    init_db(engine)
    clock = ManualClock(start_ns=round(at.timestamp() * 1e9))
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for sim in dv.engines.values():
            sim.prices.apply_scenario(dict(shock))
        cure = DeskCure(desk, dv.venues, clock, engine=engine)
        reports, pf, due = detect(cure)
        say(
            "Executing on the simulated venues (prices moved by the shock, in-memory store): "
            + (", ".join(d.pool_id for d in due) or "no pool is at its call level there")
        )
        injected = False
        ex = Executor(
            engine, dv.venues, clock, owner="pmr-demo", gate=desk_gate(desk),
            verifier=cure.verify, replanner=cure.replan,
            plan_check=lambda r: check_plan_against_desk(desk, r), on_step=say,
        )  # fmt: skip
        for d in due:
            call, _ = open_call(engine, cure, d, clock=clock, audit_key=None)
            recorded, _ = plan_call(engine, cure, call, reports, pf, clock=clock, audit_key=None)
            first = next(
                (
                    g
                    for a in recorded.plan.allocations
                    for g in a.legs
                    if g.kind is LegKind.INTERNAL
                ),
                None,
            )
            if first is not None and not injected:
                dv.engines[first.venue].faults.inject(
                    FaultKind.TIMEOUT_APPLIED, "/sapi/v1/asset/transfer", method="POST"
                )
                injected = True
                say(
                    f"fault: {first.venue} applies the next transfer, then its answer is lost "
                    "(timeout); the executor must look it up, not send it again"
                )
            say(f"{d.pool_id}: plan v1 with {len(recorded.plan.allocations)} step(s)")
            report = ex.execute(call.id)
            legs = ", ".join(f"{g.kind} {g.state.value}" for g in report.legs)
            say(f"{d.pool_id}: {report.call_status} ({legs})")
        sent = {name: len(e.transfers) for name, e in dv.engines.items()}
    engine.dispose()
    say(
        "transfers the venues booked: "
        + ", ".join(f"{name} {n}" for name, n in sent.items())
        + f"; legs sent by the executor: {ex.sends} request(s), none twice"
    )
