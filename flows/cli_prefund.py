"""``pmr prefund --apply``: execute the pre-funding advice on the desk's venues, within its caps.

Orchestration only (``core.execution.prefund`` records the advice as a call of kind
``prefund``; ``core.execution.executor`` runs it with the desk's gate):

1. read every venue (the advice is applied to what they hold now, not to the desk file's
   starting state) and compute the advice there, as the dry run does on the declared state;
2. record the advice under its id (``pf-<date>-<hash>``) with its plan, or find it on record:
   a closed one is reported and nothing is sent again; an open one (a crashed run) is finished;
   another pre-funding still open is refused (exit 2, nothing sent: its legs may yet move);
3. execute it leg by leg (each step printed as it happens): a leg over a cap or a cold-wallet
   quota is refused by the gate and never sent, and is not re-planned;
4. say what was and was not pre-positioned, and re-run the chosen scenarios on the venues'
   state after the moves: the check that the executed advice covers them.

Exit codes as ``pmr margin-call``: 0 every move made (or nothing to pre-position), 1 some
moves refused or failed, or legs left in flight; 2 bad input, nothing sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from flows.cli_common import display_path, out

if TYPE_CHECKING:
    from core.config import DeskConfig
    from core.ledger.chain import AuditKey
    from core.ledger.plans import RecordedPlan
    from core.stress.scenarios import Scenario

__all__ = ["EXIT_PARTIAL", "apply_prefund"]

EXIT_PARTIAL = 1


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False)


def _num(value: Decimal) -> str:
    """``1,000,000`` / ``102,543.6``: the booked amount without the store's trailing zeros."""
    return format(value.normalize(), ",f") if value else "0"


def _print_steps(recorded: RecordedPlan) -> None:
    for i, a in enumerate(recorded.plan.allocations):
        for leg in a.legs:
            _say(
                f"step {i}: {leg.kind.value} {_num(leg.amount)} {leg.asset} "
                f"{leg.venue}/{leg.from_wallet.value} -> {leg.destination_venue}/"
                f"{leg.to_wallet.value} ({a.source}, {leg.amount_usd:,.2f} USD)"
            )


def apply_prefund(
    desk_file: Path,
    desk: DeskConfig,
    scenarios: Sequence[Scenario],
    *,
    deadline_s: float,
    carry_bps: float,
    as_of: datetime | None,
    url: str | None,
    key: AuditKey | None,
) -> int:
    """Compute the advice on the venues, record it, execute it; the exit code (module doc)."""
    from core.execution.prefund import open_prefund, prefund_summary
    from core.ledger.store import session_scope
    from core.ledger.vocab import CallStatus
    from core.stress.prefund import prefund, uncovered
    from core.venues.state import read_desk_state
    from flows.cli_execute import desk_executor, desk_run

    names = [s.name for s in scenarios]
    with desk_run(desk, url, None, as_of) as (engine, where, dv, clock):
        _say(f"desk: {display_path(desk_file)}\nstore: {where}")
        state = read_desk_state(desk, dv.venues, clock).portfolio
        t0 = time.perf_counter()
        advice = prefund(desk, state, scenarios, deadline_s=deadline_s, carry_bps=carry_bps)
        solve_ms = (time.perf_counter() - t0) * 1e3
        for line in advice.lines():
            _say(line)
        _say(
            f"status: {advice.status}; fees {advice.cost_usd:,.2f} USD; computed on the venues' "
            f"balances, checked by re-running {len(names)} scenario(s) on the moved state"
        )
        if not advice.moves:
            _say("nothing to pre-position: nothing sent")
            return 0
        call, recorded, created = open_prefund(
            engine, desk, state, advice, names, clock=clock, audit_key=key,
            carry_bps=carry_bps, solve_ms=solve_ms,
        )  # fmt: skip
        if call.status != CallStatus.OPEN.value:
            _say(f"pre-funding {call.id} is already on record ({call.status}): nothing sent")
            with session_scope(engine) as s:
                summary = prefund_summary(s, call.id)
            for line in summary.lines():
                _say(line)
            return 0 if summary.status == CallStatus.APPLIED.value else EXIT_PARTIAL
        n = len(recorded.plan.allocations)
        _say(
            f"pre-funding {call.id} opened: {n} step(s)"
            if created
            else f"pre-funding {call.id} is on record and open: finishing it"
        )
        _print_steps(recorded)
        desk_executor(desk, engine, dv, clock, None, key).execute(call.id)
        with session_scope(engine) as s:
            summary = prefund_summary(s, call.id)
        for line in summary.lines():
            _say(line)
        after = uncovered(desk, read_desk_state(desk, dv.venues, clock).portfolio, scenarios,
                          deadline_s)  # fmt: skip
        _say(_recheck_line(after, len(names), deadline_s))
    return 0 if summary.status == CallStatus.APPLIED.value else EXIT_PARTIAL


def _recheck_line(after: dict[tuple[str, str], Decimal], n: int, deadline_s: float) -> str:
    """The verdict of re-running the scenarios on the venues after the moves."""
    short = {k: v for k, v in after.items() if v > 0}
    head = f"re-ran {n} scenario(s) on the venues after the moves:"
    if not short:
        return f"{head} every one covered within {deadline_s:g} s"
    (scenario, pool), worst = max(short.items(), key=lambda kv: kv[1])
    more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
    return (
        f"{head} still uncovered within {deadline_s:g} s: {worst:,.0f} USD in {scenario} on "
        f"{pool}{more}"
    )
