"""``pmr demo``: the product's story on the example desk, offline, in one command.

1. the desk (venues, pools, free collateral, routes);
2. portfolio margin of every pool now, next to the siloed requirement (capital efficiency);
3. a sharp move (default: ETH −26 % and BTC +8 % with vols +30 %; on 2021-05-19 ETH fell > 40 %);
4. the pools it pushes below their ``call`` level become margin calls;
5. the router plans the cheapest, fastest cure for all of them jointly (strict policy: PnL
   first, then collateral in place, then pre-authorised transfers and swaps) and says what the
   ``cost`` policy would have cost.

Orchestration and printing only: margin is ``core.margin``, the shock ``core.stress.shocks``,
the plan ``core.routing``. Nothing is sent to a venue: execution belongs to the executor.

Every option is checked, the desk loaded and the shock applied before anything is printed, so a
typo (``ET=-0.3``) is an error, not a calm "nothing to cure". With ``as_of`` the story is valued
at that instant and prints nothing that depends on the wall clock (no solve time), so two runs
print the same bytes.
"""

from __future__ import annotations

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
) -> Plan | None:
    """Print the story and return the plan (``None`` when the shock breaches no pool).

    ``as_of`` values the desk at that instant instead of now and leaves the solve time out,
    so the output is byte-identical from run to run.
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
    out.print(
        "Dry run: nothing was sent or recorded. Recorded for a margin call, each leg of each "
        "step gets its idempotency key; `pmr route --desk ... --pool ID` prints the legs as JSON."
    )
    return plan
