"""One monitor cycle: re-price every pool from the venues and say which margin calls are due.

The monitor (``flows/monitor_flow.py``) runs this on a short period. One cycle:

1. reads every venue and margins every pool on what the venues hold now
   (``core.execution.margin_call.detect_by_pool``: ``DeskCure.read`` over ``read_desk_state``);
2. **refuses stale prices**: a price older than the desk's ``max_price_age_s`` (or unusable:
   NaN, zero) makes the read raise; the cycle then acts on nothing and says why in
   :attr:`MonitorCycle.refused`. The whole desk is refused, not only the stale venue's pools:
   a plan can draw collateral from every venue, so valuing it needs every venue's prices;
3. returns the pools at or below their ``call`` level (``core.margin.levels.margin_calls_due``),
   less those **held back**: a pool whose last call was escalated less than
   ``escalation_cooldown_s`` ago is left to a person, so a breach nothing can cure does not
   open a new call (and a new escalation) every cycle.

Recording the call, planning and executing it stay with ``open_call`` / ``plan_call`` and the
executor; this module decides nothing beyond "due or not, and can we trust the prices".
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import col, select

from core.domain import Portfolio
from core.errors import NaNPriceError, StalePriceError
from core.execution.cure import DeskCure
from core.execution.margin_call import detect_by_pool
from core.ledger.store import session_scope
from core.ledger.tables import MarginCallRow
from core.ledger.vocab import CallStatus
from core.margin.levels import MarginCallDue
from core.margin.report import MarginReport

__all__ = ["MonitorCycle", "PoolMark", "monitor_cycle", "recently_escalated"]


@dataclass(frozen=True, slots=True)
class PoolMark:
    """One pool as the cycle priced it."""

    pool_id: str
    venue: str
    ratio: Decimal | None  # None: the pool carries no maintenance margin
    desk_level: str
    call_level: Decimal
    due: bool


@dataclass(frozen=True, slots=True)
class MonitorCycle:
    """What one cycle saw and what it asks for.

    ``refused`` is the reason nothing was priced (a stale or unusable price), else ``None``;
    ``due`` the calls to raise now; ``held`` the pools at or below ``call`` held back because
    their last call was escalated recently. ``reports`` and, per pool, ``portfolios`` are what
    the plan of a call raised now is made on (``plan_call`` with :meth:`portfolio_for`);
    ``portfolio`` is the desk's first pool's (the desk-wide one while the venues agree).
    """

    at: datetime
    marks: tuple[PoolMark, ...]
    due: tuple[MarginCallDue, ...]
    held: tuple[str, ...] = ()
    refused: str | None = None
    duration_ms: float = 0.0
    reports: Mapping[str, MarginReport] = field(default_factory=dict, repr=False)
    portfolio: Portfolio | None = field(default=None, repr=False)
    portfolios: Mapping[str, Portfolio] = field(default_factory=dict, repr=False)

    def portfolio_for(self, pool_id: str) -> Portfolio | None:
        """The portfolio to plan ``pool_id``'s call on (``None`` on a refused cycle)."""
        return self.portfolios.get(pool_id, self.portfolio)

    @property
    def acted(self) -> bool:
        """True when prices were fresh enough to act on."""
        return self.refused is None


def recently_escalated(engine: Engine, pool_ids: Iterable[str], *, since: datetime) -> set[str]:
    """The pools among ``pool_ids`` with a call escalated at or after ``since``."""
    wanted = list(pool_ids)
    if not wanted:
        return set()
    with session_scope(engine) as s:
        rows = s.exec(
            select(MarginCallRow.pool_id)
            .where(col(MarginCallRow.pool_id).in_(wanted))
            .where(MarginCallRow.status == CallStatus.ESCALATED.value)
            .where(col(MarginCallRow.closed_at) >= since)
        ).all()
    return set(rows)


def monitor_cycle(
    cure: DeskCure,
    *,
    engine: Engine | None = None,
    escalation_cooldown_s: float = 900.0,
) -> MonitorCycle:
    """Price every pool of ``cure.desk`` from its venues; the calls due (see the module doc).

    Parameters
    ----------
    cure
        The desk on its venues (its clock stamps the cycle).
    engine
        The store; with it, pools escalated within ``escalation_cooldown_s`` are held back.
    escalation_cooldown_s
        How long a pool whose call was escalated is left to a person before a new call.

    Examples
    --------
    >>> cycle = monitor_cycle(DeskCure(desk, dv.venues, clock))  # doctest: +SKIP
    >>> [d.pool_id for d in cycle.due], cycle.refused  # doctest: +SKIP
    (['sim-b.opt'], None)
    """
    desk = cure.desk
    at = cure.clock.now()
    t0 = time.perf_counter()
    try:
        reports, portfolios, due = detect_by_pool(cure)
    except (StalePriceError, NaNPriceError) as exc:
        return MonitorCycle(
            at=at,
            marks=(),
            due=(),
            refused=f"prices not trusted, nothing acted on: {exc}",
            duration_ms=(time.perf_counter() - t0) * 1e3,
        )
    held: set[str] = set()
    if engine is not None and due:
        since = at - timedelta(seconds=escalation_cooldown_s)
        held = recently_escalated(engine, (d.pool_id for d in due), since=since)
    due_ids = {d.pool_id for d in due}
    marks = tuple(
        PoolMark(
            pool_id=p.id,
            venue=p.venue,
            ratio=reports[p.id].ratio,
            desk_level=reports[p.id].desk_level.value,
            call_level=Decimal(str(p.thresholds.call)),
            due=p.id in due_ids,
        )
        for p in desk.pools
    )
    return MonitorCycle(
        at=at,
        marks=marks,
        due=tuple(d for d in due if d.pool_id not in held),
        held=tuple(sorted(held)),
        duration_ms=(time.perf_counter() - t0) * 1e3,
        reports=reports,
        portfolio=portfolios[desk.pools[0].id],
        portfolios=portfolios,
    )
