"""``pmr demo``: what the deployments do, in one process, on the example desk, in seconds.

The story, step by step, each step on the core function its Prefect flow calls:

1. **reconcile** (``reconcile`` flow: ``core.ledger.reconcile.reconcile``): the desk's two
   simulated venues are snapshotted into a fresh SQLite store: the ledger's baseline;
2. **stress-test** (``stress-test`` flow: ``core.stress.evaluate.evaluate`` over the scenario
   library, ``core.stress.prefund.prefund`` for the advice): the worst pools and what no plan
   covers in time;
3. **a sharp move in the simulator** (default ETH −26 %, BTC +8 %; on 2021-05-19 ETH fell
   > 40 %): both simulated venues re-price, as ``pmr sim serve``'s shock control does;
4. **the monitor** (``monitor`` flow: ``core.execution.monitor.monitor_cycle``, then
   ``core.execution.margin_call.open_call``) re-prices every pool from venue reads and records a
   margin call for each pool at or below its ``call`` level;
5. **the margin-call flow** for each call (``margin-call`` flow: ``monitor_cycle`` to load the
   state, ``core.execution.margin_call.plan_call`` (cvxpy + HiGHS), then the desk's
   ``core.execution.executor.Executor`` from ``flows.runtime.DeskRuntime``, as the flow builds
   it): the answer to the first transfer is lost after the venue applied it (an injected
   timeout) and the executor finds it by lookup instead of sending it again; the pool is
   re-priced to check its ratio is restored;
6. **after**: the pools re-priced, a second reconciliation (venues and ledger agree: nothing
   was booked twice), every booked write at the venues counted against the legs confirmed;
7. **the audit trail**: the hash chain verified (``core.ledger.audit_log.verify_audit_chain``)
   and each call's events (``core.execution.story.call_story``, as ``pmr audit show --call``).

It ends with where the same runs, artifacts and events appear in the Prefect UI (``pmr demo
--serve`` runs them there). No Prefect server starts here and Prefect is not even imported:
a temporary server alone takes longer than this whole story.

The store is SQLite in ``$PMR_HOME/demo/pmr.db``, replaced on every run (never the desk's own
``$PMR_HOME/pmr.db``, nor ``PMR_DATABASE_URL``), so ``pmr audit show --url ... --call ID`` can
read it afterwards; without ``PMR_HOME`` it is a temporary directory removed at the end.

:func:`run_story` runs the steps and returns a :class:`DemoStory`; :func:`print_story` prints
it. With ``as_of`` the desk is valued at that instant on a manual clock, and nothing printed
depends on the wall clock or on chance (no solve time, no measured latency, margin-call ids
cut to their time part), so two runs print the same bytes.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError
from flows.cli_common import as_of_or_now, check_number, display_path, out

if TYPE_CHECKING:  # loaded when the demo runs, so `pmr --help` stays fast
    from core.config import DeskConfig
    from core.execution.executor import ExecutionReport
    from core.execution.monitor import MonitorCycle
    from core.execution.story import CallStory
    from core.ledger.chain import ChainVerdict
    from core.ledger.plans import RecordedPlan
    from core.ledger.reconcile import ReconReport
    from core.routing.plan import Plan
    from core.stress.prefund import PrefundAdvice
    from flows.runtime import DeskRuntime

__all__ = [
    "DEFAULT_SHOCK",
    "PREFECT_DEPLOYMENTS",
    "PREFECT_STEPS",
    "CallRun",
    "DemoStory",
    "StressSummary",
    "WorstCase",
    "check_shock",
    "demo_store",
    "parse_shock",
    "print_story",
    "run_demo",
    "run_story",
]

DEFAULT_SHOCK = "ETH=-0.26,BTC=0.08"
#: The deployments ``deployments/serve.py`` builds, as the Prefect UI lists them (flow/deployment).
PREFECT_DEPLOYMENTS = (
    "reconcile/pmr-reconcile",
    "stress-test/pmr-stress-test",
    "monitor/pmr-monitor",
    "margin-call/pmr-margin-call",
)
#: The story's step each deployment runs, and the artifacts and events it shows there
#: (keys from ``flows/*_flow.py``, event names from ``flows/events.py``).
PREFECT_STEPS = (
    ("1", "reconcile-drifts; pmr.reconcile.drift"),
    ("2", "stress-summary, stress-results; pmr.stress.breach"),
    ("4", "monitor-pools; pmr.margin.call (triggers margin-call)"),
    ("5", "margin-call-plan, margin-call-transfers; pmr.margin.cured"),
)
_WEAK = ("call", "reduce_only", "liquidation")  # as the stress-test flow flags a weak pool
_PREFUND_DEADLINE_S = 60.0
Say = Callable[[str], None]
_MS = re.compile(r"(?: in| after)? \d+ ms| \(\d+ ms\)")


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
    """Refuse a shock on an asset the desk does not price (it would move nothing, and the demo
    would calmly report that no pool breaches: ``ET=-0.3`` for ``ETH``) or a move the
    simulator cannot make (−100 % or less, +1000 % or more, not a number)."""
    priced = sorted(p.symbol for p in desk.prices if p.symbol in desk.assets)
    unknown = [a for a in moves if a not in priced]
    if unknown:
        raise ConfigError(
            f"shock moves {', '.join(unknown)}, which the desk does not price; "
            f"assets it prices: {', '.join(priced)}"
        )
    for asset, move in moves.items():
        if not (math.isfinite(move) and -1.0 < move < 10.0):
            raise ConfigError("price move must be in (-100 %, +1000 %)", asset=asset, move=move)


# -- the story as data ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorstCase:
    """A pool's worst scenario: its ratio and level there, and what no plan covers in 10 min."""

    pool_id: str
    scenario: str
    ratio: Decimal | None  # None: the pool carries no maintenance margin
    desk_level: str
    uncovered_usd: Decimal


@dataclass(frozen=True, slots=True)
class StressSummary:
    """The stress test of the desk's declared state, as the ``stress-test`` flow sums it up.

    ``worst`` is each pool's worst row (lowest ratio first); ``weak`` the pools the flow
    announces with ``pmr.stress.breach`` (at or below ``call`` in some scenario).
    """

    pools: int
    scenarios: int
    at_or_below_call: int
    liquidation: int
    worst: tuple[WorstCase, ...]
    weak: tuple[str, ...]
    advice: PrefundAdvice | None


@dataclass(frozen=True, slots=True)
class CallRun:
    """One margin call from its record to its verdict."""

    call_id: str
    pool_id: str
    ratio_at_raise: Decimal | None
    target_ratio: Decimal
    deficit_usd: Decimal
    plan: RecordedPlan  # the plan the call was executed on first (v1)
    report: ExecutionReport
    steps: tuple[str, ...]  # what the executor said, in order
    fault: str | None  # the fault injected before this call's run, if any
    story: CallStory  # read back from the audit trail


@dataclass(frozen=True, slots=True)
class DemoStory:
    """Everything one run of the demo did, in order; :func:`print_story` prints it."""

    desk_name: str
    desk_file: str
    at: datetime
    as_of_fixed: bool
    store: str  # where the store is, or that it was temporary
    store_url: str | None  # an URL ``pmr audit`` can read afterwards (None: removed)
    baseline: ReconReport
    stress: StressSummary
    shock: Mapping[str, float]
    before: MonitorCycle
    after: MonitorCycle
    calls: tuple[CallRun, ...] = ()
    dry_plan: Plan | None = None  # the joint plan of a dry run (nothing recorded or sent)
    restored: MonitorCycle | None = None
    final: ReconReport | None = None
    booked: Mapping[str, int] = field(default_factory=dict)  # writes each venue booked
    legs_confirmed: int = 0
    sends: int = 0  # requests that left the executor
    chain: ChainVerdict | None = None


# -- running it -------------------------------------------------------------------------------


@contextmanager
def demo_store(env: Mapping[str, str] | None = None) -> Iterator[tuple[str, str | None]]:
    """A fresh SQLite store URL for one demo run, and the URL to read it by afterwards.

    ``$PMR_HOME/demo/pmr.db`` is replaced (kept after the run, so ``pmr audit`` can read
    it); without ``PMR_HOME``, a temporary directory removed on exit (second item ``None``).
    The desk's own store (``$PMR_HOME/pmr.db`` or ``PMR_DATABASE_URL``) is never touched: the
    demo's simulated calls do not belong in it.
    """
    home = (os.environ if env is None else env).get("PMR_HOME", "").strip()
    if home:
        folder = Path(home).expanduser().resolve() / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("pmr.db", "pmr.db-wal", "pmr.db-shm", "pmr.db-journal"):
            (folder / name).unlink(missing_ok=True)
        url = f"sqlite:///{folder / 'pmr.db'}"
        yield url, url
        return
    folder = Path(tempfile.mkdtemp(prefix="pmr-demo-"))
    try:
        yield f"sqlite:///{folder / 'pmr.db'}", None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stress(desk: DeskConfig, at: datetime) -> StressSummary:
    """The ``stress-test`` flow's work in one batch: every pool under every named scenario,
    and the pre-funding advice for the 60 s deadline."""
    from core.stress.evaluate import evaluate
    from core.stress.prefund import prefund
    from core.stress.scenarios import library

    stables = [a for a, c in desk.assets.items() if c.kind == "stablecoin"]
    lib = library(venues=[v.name for v in desk.venues], assets=list(desk.assets),
                  stablecoins=stables)  # fmt: skip
    state = desk.initial_portfolio(at)
    rows = evaluate(desk, state, lib.values())
    worst: dict[str, WorstCase] = {}
    for r in sorted(rows, key=lambda r: (r.ratio is None, r.ratio or 0)):
        if r.pool_id not in worst:
            worst[r.pool_id] = WorstCase(r.pool_id, r.scenario, r.ratio, r.desk_level,
                                         r.uncovered_usd)  # fmt: skip
    advice = prefund(desk, state, list(lib.values()), deadline_s=_PREFUND_DEADLINE_S)
    return StressSummary(
        pools=len(desk.pools),
        scenarios=len(lib),
        at_or_below_call=sum(1 for r in rows if r.desk_level in _WEAK),
        liquidation=sum(1 for r in rows if r.desk_level == "liquidation"),
        worst=tuple(worst.values()),
        weak=tuple(p for p, w in worst.items() if w.desk_level in _WEAK),
        advice=advice,
    )


def run_story(
    desk: DeskConfig,
    desk_file: str,
    *,
    shock: Mapping[str, float],
    deadline_s: float,
    at: datetime,
    store_url: str,
    kept_url: str | None = None,
    as_of_fixed: bool = False,
    dry_run: bool = False,
) -> DemoStory:
    """Run the story (module doc) on ``desk``'s simulated venues and the store at ``store_url``.

    Parameters
    ----------
    desk, desk_file
        The desk (every venue simulated) and the file it was read from.
    shock
        USD price moves applied to every simulated venue (``{"ETH": -0.26}``).
    deadline_s
        Seconds each cure may take (the plan's deadline).
    at
        The instant the story starts at (the simulated venues' manual clock).
    store_url, kept_url
        An empty store (:func:`demo_store`), and the URL to read it by afterwards (``None``:
        it is removed after the run).
    as_of_fixed
        ``at`` came from ``--as-of`` (printing leaves out what a run cannot reproduce).
    dry_run
        Stop after the monitor: the calls due are planned jointly, nothing recorded or sent.

    Raises what the core raises (``PmrError``); a venue the desk does not simulate is refused
    by :func:`run_demo` before this runs.
    """
    from dataclasses import replace

    from sqlmodel import Session

    from core.clock import ManualClock
    from core.execution.monitor import monitor_cycle
    from core.ledger.audit_log import verify_audit_chain
    from core.ledger.reconcile import reconcile
    from core.ledger.store import init_db, make_engine, redact_url
    from core.venues.factory import build_desk_venues
    from flows.audit_key import resolve_audit_key
    from flows.runtime import DeskRuntime

    key = resolve_audit_key(required=False)  # PMR_AUDIT_KEY, as the flows read it
    engine = make_engine(store_url)
    init_db(engine)
    clock = ManualClock(start_ns=round(at.timestamp() * 1e9))
    shown = redact_url(kept_url) if kept_url else "temporary, removed at exit (PMR_HOME keeps it)"
    try:
        with build_desk_venues(desk, clock) as dv:
            dv.warm_up()
            rt = DeskRuntime(desk_file, desk, clock, dv, engine, audit_key=key, store=shown,
                             owner="pmr-demo", follow_wall=False)  # fmt: skip
            rt.cure.deadline_s = deadline_s  # re-plans keep the demo's deadline

            def reconcile_now() -> ReconReport:
                with Session(engine) as session:
                    report = reconcile(session, desk, dv.venues, now=clock.now(), audit_key=key)
                    session.commit()
                return report

            baseline = reconcile_now()
            stress = _stress(desk, at)
            # Simulated prices step once a second on each venue's own seeded path; the story
            # stays inside one step, where both venues quote the same prices (see
            # `_margin_calls` for why that matters).
            clock.advance(0.1)
            before = monitor_cycle(rt.cure, engine=engine)
            for sim in dv.engines.values():
                sim.prices.apply_scenario(dict(shock))
            after = monitor_cycle(rt.cure, engine=engine)
            story = DemoStory(
                desk_name=desk.desk.name, desk_file=desk_file, at=at, as_of_fixed=as_of_fixed,
                store=shown, store_url=kept_url, baseline=baseline, stress=stress,
                shock=dict(shock), before=before, after=after,
            )  # fmt: skip
            if dry_run:
                return replace(story, dry_plan=_joint_plan(desk, after, deadline_s))
            if not after.due:
                return story
            calls, sends = _margin_calls(rt, after, deadline_s)
            restored = monitor_cycle(rt.cure, engine=engine)
            final = reconcile_now()
            booked = {
                name: len(e.transfers) + len(e.margin_orders) + len(e.convert_orders)
                + len(e.withdrawals)
                for name, e in dv.engines.items()
            }  # fmt: skip
        with Session(engine) as session:
            chain = verify_audit_chain(session, key=key)
    finally:
        engine.dispose()
    confirmed = sum(1 for c in calls for g in c.report.legs if g.state.value == "confirmed")
    return replace(
        story, calls=tuple(calls), restored=restored, final=final, booked=booked,
        legs_confirmed=confirmed, sends=sends, chain=chain,
    )  # fmt: skip


def _joint_plan(desk: DeskConfig, after: MonitorCycle, deadline_s: float) -> Plan | None:
    """A dry run's plan: every call due covered jointly, on the monitor's read; not recorded."""
    from core.execution.planning import plan_inputs
    from core.routing import Router

    if not after.due or after.portfolio is None:
        return None
    planned = plan_inputs(desk, after.portfolio, [d.pool_id for d in after.due],
                          deadline_s=deadline_s, reports=dict(after.reports))  # fmt: skip
    return Router().route(planned.input, notes=planned.notes)


def _margin_calls(
    rt: DeskRuntime, after: MonitorCycle, deadline_s: float
) -> tuple[list[CallRun], int]:
    """The monitor's fast path for each call due, as ``monitor_flow.raise_calls`` runs it:
    record the call, then the margin-call flow's steps (load the state with a monitor cycle,
    plan v1 and record it, execute with the desk's executor, verify); and the requests sent.

    The first call with a transfer leg gets the fault: its venue applies the next transfer,
    then the answer is lost (``FaultKind.TIMEOUT_APPLIED``).

    The flow plans v1 on ``monitor_cycle(...).portfolio``: the desk-wide portfolio only while
    every venue quotes the same prices, else the first pool's venue alone (``DeskCure.reports``
    without a pool), on which a call of another venue's pool finds no source and is re-planned.
    The story keeps the venues in step (one price step of the simulator) so v1 is the real plan.
    """
    from core.execution.margin_call import open_call, plan_call
    from core.execution.monitor import monitor_cycle
    from core.execution.story import call_story
    from core.ledger.store import session_scope
    from core.routing.legs import LegKind
    from core.venues.sim.faults import FaultKind

    runs: list[CallRun] = []
    sends = 0
    injected = False
    for due in after.due:
        call, _ = open_call(rt.engine, rt.cure, due, clock=rt.clock, audit_key=rt.audit_key)
        state = monitor_cycle(rt.cure, engine=rt.engine)  # the flow's load-state task
        if state.portfolio is None:
            raise ConfigError("the simulated venues' prices were refused", reason=state.refused)
        recorded, _ = plan_call(
            rt.engine, rt.cure, call, dict(state.reports), state.portfolio,
            clock=rt.clock, audit_key=rt.audit_key, deadline_s=deadline_s,
        )  # fmt: skip
        fault = None
        first = next((g for a in recorded.plan.allocations for g in a.legs
                      if g.kind is LegKind.INTERNAL), None)  # fmt: skip
        if first is not None and not injected:
            rt.venues.engines[first.venue].faults.inject(
                FaultKind.TIMEOUT_APPLIED, "/sapi/v1/asset/transfer", method="POST"
            )
            injected = True
            fault = f"{first.venue} applies the next transfer, then its answer is lost (timeout)"
        steps: list[str] = []
        ex = rt.executor(on_step=steps.append)
        report = ex.execute(call.id)
        sends += ex.sends
        with session_scope(rt.engine) as s:
            story = call_story(s, call.id)
        run = CallRun(
            call_id=call.id, pool_id=call.pool_id, ratio_at_raise=due.ratio,
            target_ratio=due.target_ratio, deficit_usd=due.deficit_usd, plan=recorded,
            report=report, steps=tuple(steps), fault=fault, story=story,
        )  # fmt: skip
        runs.append(run)
    return runs, sends


# -- printing ---------------------------------------------------------------------------------


def _ratio(value: Decimal | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def _usd(value: Decimal | float) -> str:
    return f"{value:,.0f}"


def _call_label(call_id: str, fixed: bool) -> str:
    """A margin-call id; with ``--as-of``, its time part only (the rest is random)."""
    return call_id.rsplit("-", 1)[0] + "-…" if fixed else call_id


def _say(line: str = "", *, fixed: bool = False) -> None:
    out.print(_MS.sub("", line) if fixed else line, markup=False, highlight=False)


def print_story(story: DemoStory) -> None:
    """Print ``story`` (:func:`run_story`) in about a screen: each step, then the Prefect UI."""
    fixed = story.as_of_fixed

    def say(line: str = "") -> None:
        _say(line, fixed=fixed)

    say(f"pmr demo: {story.desk_name} ({story.desk_file})")
    say(f"valued at {story.at.isoformat()}" + (" (--as-of)" if fixed else ""))
    say(f"store: {story.store}")
    _print_reconcile(say, story)
    _print_stress(say, story.stress)
    moves = ", ".join(f"{a} {m:+.0%}" for a, m in story.shock.items())
    say(f"3. move: {moves} on every simulated venue")
    _print_monitor(say, story)
    if story.dry_plan is not None:
        _print_dry_plan(say, story.dry_plan)
    elif not story.after.due:
        say("   no pool falls to its call level under this move: nothing to cure")
    else:
        for run in story.calls:
            _print_call(say, run, fixed)
        _print_after(say, story)
        _print_audit(say, story)
    _print_prefect(say)


def _print_reconcile(say: Say, story: DemoStory) -> None:
    b = story.baseline
    venues = ", ".join(b.snapshot_ids)
    if len(b.baseline) == len(b.snapshot_ids):
        say(f"1. reconcile: {venues} snapshotted as the ledger's baseline, "
            f"{len(b.drifts)} drifts; audit head anchored")  # fmt: skip
    else:
        say(f"1. reconcile: {venues}: {b.compared} balances compared, {len(b.drifts)} drifts")


def _print_stress(say: Say, s: StressSummary) -> None:
    say(f"2. stress-test: {s.pools} pools x {s.scenarios} scenarios: {s.at_or_below_call} of "
        f"{s.pools * s.scenarios} at or below call, {s.liquidation} at liquidation")  # fmt: skip
    say(f"     {'pool':<10} {'worst':>6}  {'level':<11} scenario")
    for w in s.worst:
        short = f" ({_usd(w.uncovered_usd)} USD not coverable in 10 min)" if w.uncovered_usd else ""
        say(f"     {w.pool_id:<10} {_ratio(w.ratio):>6}  {w.desk_level:<11} {w.scenario}{short}")
    a = s.advice
    if a is None or a.status == "nothing_to_do":
        say(f"   pre-funding: nothing to move, all covered in {_PREFUND_DEADLINE_S:g} s")
        return
    for m in a.moves:
        say(f"   pre-funding advice ({a.deadline_s:g} s): move {_usd(m.amount)} {m.asset} "
            f"{m.venue}/{m.from_wallet} -> {m.to_venue}/{m.to_wallet} ({m.route_id})")  # fmt: skip
    left = {k: v for k, v in a.after.items() if v > 0}
    if left:
        worst = max(left, key=lambda k: left[k])
        say(f"   still short after it: {_usd(left[worst])} USD on {worst[1]} in {worst[0]}")


def _print_monitor(say: Say, story: DemoStory) -> None:
    ids = {c.pool_id: _call_label(c.call_id, story.as_of_fixed) for c in story.calls}
    before = {m.pool_id: m for m in story.before.marks}
    due = {d.pool_id for d in story.after.due}
    say("4. monitor: every pool re-priced from the venues")
    say(f"     {'pool':<10} {'before':>7} {'after':>7} {'call':>5}  action")
    for m in story.after.marks:
        action = "-"
        if m.pool_id in due:
            action = "margin call " + ids.get(m.pool_id, "(dry run: not recorded)")
        ratio_before = before[m.pool_id].ratio if m.pool_id in before else None
        say(f"     {m.pool_id:<10} {_ratio(ratio_before):>7} {_ratio(m.ratio):>7} "
            f"{m.call_level:>5}  {action}")  # fmt: skip


def _steps_table(say: Say, plan: Plan, pool: str | None) -> None:
    say(f"     {'step':>4}  {'source':<28} {'mode':<9} {'USD':>10} {'credit USD':>10} "
        f"{'cost USD':>9} {'ETA s':>5}")  # fmt: skip
    for n, a in enumerate(plan.allocations):
        # a call's own steps drop the pool prefix of their source ("sim-a.pm:a.spot-margin")
        source = a.source.removeprefix(f"{pool}:") if pool is not None else a.source
        say(f"     {n:>4}  {source:<28} {a.mode:<9} {_usd(a.amount_usd):>10} "
            f"{_usd(a.credit_usd):>10} {a.cost_usd:>9,.2f} {a.eta_s:>5g}")  # fmt: skip


def _print_dry_plan(say: Say, plan: Plan) -> None:
    say(f"5. plan (dry run): {plan.status}, cost {plan.cost_usd:,.2f} USD, "
        f"uncovered {_usd(plan.uncovered_usd)} USD")  # fmt: skip
    _steps_table(say, plan, None)
    say("   Dry run: no margin call was recorded and nothing was sent.")


def _print_call(say: Say, run: CallRun, fixed: bool) -> None:
    p = run.plan.plan
    solved = "" if fixed else f" in {p.solve_ms:.0f} ms"
    say(f"5. margin-call flow, {run.pool_id}: ratio {_ratio(run.ratio_at_raise)}, "
        f"{_usd(run.deficit_usd)} USD short of its target {run.target_ratio:.2f}")  # fmt: skip
    say(f"   plan v{run.plan.version} ({p.policy.value}; cvxpy + HiGHS{solved}): {p.status}, cost "
        f"{p.cost_usd:,.2f} USD, uncovered {_usd(p.uncovered_usd)} USD")  # fmt: skip
    _steps_table(say, p, run.pool_id)
    if run.fault is not None:
        say(f"   fault: {run.fault}")
    for line in run.steps:
        say(f"     {line}")
    v = run.report.verification
    after = "-" if v is None else _ratio(v.ratio)
    took = "" if fixed or run.story.elapsed_ms is None else f" in {run.story.elapsed_ms:,.0f} ms"
    say(f"   {run.pool_id}: {run.report.call_status}{took}, ratio {_ratio(run.ratio_at_raise)} "
        f"-> {after} (target {run.target_ratio:.2f})")  # fmt: skip


def _print_after(say: Say, story: DemoStory) -> None:
    if story.restored is not None:
        ratios = ", ".join(f"{m.pool_id} {_ratio(m.ratio)}" for m in story.restored.marks)
        cured = sum(1 for c in story.calls if c.report.call_status == "cured")
        say(f"6. after: {ratios}; {cured} of {len(story.calls)} calls cured")
    f = story.final
    if f is not None:
        say(f"   reconcile: {f.compared} balances compared, {len(f.drifts)} drifts, "
            f"{len(f.in_flight)} legs in flight")  # fmt: skip
    booked = ", ".join(f"{v} {n}" for v, n in story.booked.items())
    say(f"   venues booked {sum(story.booked.values())} writes ({booked}) for "
        f"{story.legs_confirmed} legs confirmed; {story.sends} requests sent, none twice")  # fmt: skip


def _print_audit(say: Say, story: DemoStory) -> None:
    say(f"7. {story.chain}")
    width = max(len(c.pool_id) for c in story.calls)
    for c in story.calls:
        kinds = [line.event + (f" v{line.plan_version}" if line.event == "PlanMade" else "")
                 for line in c.story.lines]  # fmt: skip
        for n, chunk in enumerate(_wrap(kinds, width=82 - width)):
            say(f"     {c.pool_id if n == 0 else '':<{width}}  {chunk}")
    if story.store_url is not None and story.calls and not story.as_of_fixed:
        say(f"   one call's story: uv run pmr audit show --url {story.store_url} "
            f"--call {story.calls[0].call_id}")  # fmt: skip


def _wrap(items: Sequence[str], *, width: int, sep: str = " > ") -> list[str]:
    """``items`` joined by ``sep`` into lines of at most ``width`` characters (one item may
    exceed it), each continued line starting with ``sep``'s arrow."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        else:
            lines.append(item if not lines else sep.lstrip() + item)
    return lines


def _print_prefect(say: Say) -> None:
    say("Prefect UI: `uv run pmr demo --serve` runs these steps as deployments; look for")
    say(f"  step  {'deployment':<28} artifacts; events")
    for deployment, (step, shows) in zip(PREFECT_DEPLOYMENTS, PREFECT_STEPS, strict=True):
        say(f"  {step:<5} {deployment:<28} {shows}")


def run_demo(
    desk_file: Path,
    *,
    shock: Mapping[str, float],
    deadline_s: float,
    as_of: datetime | None = None,
    dry_run: bool = False,
) -> DemoStory:
    """Check the options, run the story (:func:`run_story`) and print it; the story.

    Everything is checked (options, desk, shock, the desk's state at the instant) before the
    store is made or anything printed, so a bad option is one line and exit 2, with nothing
    written.
    """
    from core.config import load_desk

    check_number(deadline_s, "--deadline", gt=0.0)
    desk = load_desk(desk_file)
    check_shock(desk, shock)
    live = [v.name for v in desk.venues if v.kind != "sim"]
    if live:
        raise ConfigError("the demo runs on simulated venues only", venues=", ".join(live))
    at = as_of_or_now(as_of)
    desk.initial_portfolio(at)  # an option past its expiry at `at` is refused here
    with demo_store() as (url, kept):
        story = run_story(
            desk, display_path(desk_file), shock=shock, deadline_s=deadline_s, at=at,
            store_url=url, kept_url=kept, as_of_fixed=as_of is not None, dry_run=dry_run,
        )  # fmt: skip
    print_story(story)
    return story
