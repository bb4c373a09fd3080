"""The state → margin reports → routing input pipeline, in one place.

The CLI (``pmr route --desk``), the demo and the margin-call flow all plan the same way: price
every pool of the desk on a :class:`~core.domain.Portfolio` (the desk's declared state, a
shocked copy of it, or the balances and positions read from the venues), then build the
routing input that covers the given pools jointly from that state (``core.routing.from_state``).
Doing it once here keeps the three from drifting apart: the reports the sources are built from
are the reports the deficits come from.

Examples
--------
>>> from datetime import UTC, datetime
>>> from core.config import load_desk
>>> desk = load_desk("examples/desk.toml")
>>> state = desk.initial_portfolio(datetime(2026, 11, 27, tzinfo=UTC))
>>> planned = plan_inputs(desk, state, ["sim-b.um"], deadline_s=60,
...                       deficit_override_usd={"sim-b.um": 250_000})
>>> [c.id for c in planned.input.calls], planned.reports["sim-b.um"].pool_id
(['sim-b.um'], 'sim-b.um')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.config import DeskConfig
from core.domain import Portfolio
from core.margin.api import evaluate_pool
from core.margin.report import MarginReport
from core.routing.from_state import routing_input_from_state
from core.routing.sources import Policy, RoutingInput

__all__ = ["PlanInputs", "plan_inputs", "pool_reports"]


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What planning a cure needs: every pool's margin report, the routing input, and notes.

    ``notes`` say which candidate sources were left out and why (no allow-list entry, dust
    balances, an asset that is not collateral in the pool); the router carries them into the
    plan.
    """

    reports: Mapping[str, MarginReport]
    input: RoutingInput
    notes: tuple[str, ...]


def pool_reports(desk: DeskConfig, portfolio: Portfolio) -> dict[str, MarginReport]:
    """The margin report of every pool of ``desk`` on ``portfolio``, in the desk's order.

    Every pool, not only those to cover: collateral leaving a pool counts against its headroom
    above its own ``call`` level, which its report gives.
    """
    return {p.id: evaluate_pool(desk, p.id, portfolio) for p in desk.pools}


def plan_inputs(
    desk: DeskConfig,
    portfolio: Portfolio,
    pools: Sequence[str],
    *,
    deadline_s: float,
    reports: Mapping[str, MarginReport] | None = None,
    policy: Policy = Policy.STRICT,
    deficit_override_usd: Mapping[str, float] | None = None,
    used_24h_usd: Mapping[str, Decimal] | None = None,
    weight_limits_per_min: Mapping[str, Mapping[str, int]] | None = None,
    call_ids: Mapping[str, str] | None = None,
) -> PlanInputs:
    """Price the desk on ``portfolio`` and build the routing input covering ``pools``.

    Parameters
    ----------
    desk, portfolio
        The desk configuration and the state to plan on (declared, shocked or read).
    pools
        Pools to cover, jointly (they share sources without double-spending).
    deadline_s
        Seconds the cure may take.
    reports
        Margin reports already computed on ``portfolio`` (every pool); computed when absent.
    policy, deficit_override_usd, used_24h_usd, weight_limits_per_min, call_ids
        As for ``core.routing.from_state.routing_input_from_state``.
    """
    reports = dict(reports) if reports is not None else pool_reports(desk, portfolio)
    built = routing_input_from_state(
        desk,
        portfolio,
        reports,
        pools,
        deadline_s=deadline_s,
        policy=policy,
        deficit_override_usd=deficit_override_usd,
        used_24h_usd=used_24h_usd,
        weight_limits_per_min=weight_limits_per_min,
        call_ids=call_ids,
    )
    return PlanInputs(reports=reports, input=built.input, notes=built.notes)
