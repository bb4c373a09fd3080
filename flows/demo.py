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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from core.clock import SystemClock
from core.config import DeskConfig, load_desk
from core.errors import ConfigError
from flows.cli_common import out
from flows.desk_summary import print_desk_summary

if TYPE_CHECKING:
    from core.margin.report import MarginReport
    from core.routing.plan import Plan

__all__ = ["DEFAULT_SHOCK", "breached_pools", "parse_shock", "run_demo"]

DEFAULT_SHOCK = "ETH=-0.26,BTC=0.08"


def parse_shock(text: str) -> dict[str, float]:
    """Parse ``"ETH=-0.25,BTC=0.1"`` into ``{"ETH": -0.25, "BTC": 0.1}``."""
    moves: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        asset, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError(part)
            moves[asset.strip().upper()] = float(value)
        except ValueError:
            raise ConfigError(
                "shock must look like ASSET=MOVE[,ASSET=MOVE] with MOVE a fraction (-0.25)",
                shock=text,
            ) from None
    if not moves:
        raise ConfigError("shock is empty", shock=text)
    return moves


def breached_pools(desk: DeskConfig, reports: Mapping[str, MarginReport]) -> list[str]:
    """Pools whose ``desk_level`` is at or below their own ``call``: they need a margin call."""
    return [pool.id for pool in desk.pools if reports[pool.id].margin_call_due]


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _margin_table(title: str, desk: DeskConfig, reports: Mapping[str, MarginReport]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("pool", "model", "adj. equity USD", "MM USD", "ratio", "band", "call"):
        table.add_column(col, justify="right" if "USD" in col or col in ("ratio",) else "left")
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
            r.venue_band.value,
            f"{pool.thresholds.call}",
            _usd(r.standard_mm_usd),
            "-" if r.capital_efficiency is None else f"{r.capital_efficiency:.2f}x",
        )
    return table


def _plan_tables(plan: Plan) -> Sequence[Table]:
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
) -> Plan | None:
    """Print the story and return the plan (``None`` when the shock breaches no pool)."""
    from core.margin.api import evaluate_pool
    from core.routing import Router
    from core.routing.from_state import routing_input_from_state
    from core.stress.shocks import shock_portfolio

    desk = load_desk(desk_file)
    print_desk_summary(desk, source=str(desk_file))
    at = SystemClock().now()
    state = desk.initial_portfolio(at)
    now = {p.id: evaluate_pool(desk, p.id, state) for p in desk.pools}
    out.print(_margin_table("Portfolio margin now", desk, now))

    moves = ", ".join(f"{a} {m:+.0%}" for a, m in shock.items())
    shocked = shock_portfolio(state, desk.instrument_map(), shock, vol_up_frac=vol_up_frac)
    after = {p.id: evaluate_pool(desk, p.id, shocked) for p in desk.pools}
    out.print(_margin_table(f"After {moves}, vols {vol_up_frac:+.0%}", desk, after))

    calls = breached_pools(desk, after)
    if not calls:
        out.print("No pool falls to its call level under this shock: nothing to cure.")
        return None
    out.print(f"Margin calls: {', '.join(calls)} (deadline {deadline_s:g} s, policy strict)")
    built = routing_input_from_state(desk, shocked, after, calls, deadline_s=deadline_s)
    plan = Router().route(built.input)
    for table in _plan_tables(plan):
        out.print(table)
    alt = plan.alternative
    alt_text = "" if alt is None else f"; the {alt.policy.value} policy would cost "
    if alt is not None:
        alt_text += "-" if alt.cost_usd is None else f"{alt.cost_usd:,.2f} USD ({alt.status})"
    out.print(
        f"plan {plan.plan_id}: {plan.status}, cost {plan.cost_usd:,.2f} USD, "
        f"uncovered {plan.uncovered_usd:,.0f} USD, solved in {plan.solve_ms:.1f} ms{alt_text}"
    )
    out.print(
        "Dry run: nothing was sent. Each step carries its idempotency key for the executor; "
        "`pmr route --desk ... --pool ID` prints the full plan as JSON."
    )
    return plan
