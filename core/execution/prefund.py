"""Pre-funding, executed: a checked recommendation recorded and run like a margin call.

``core.stress.prefund`` says what to pre-position where so chosen scenarios are covered within
a deadline; ``pmr prefund --apply`` executes it. Nothing here moves collateral a margin call
could not: the recommendation becomes a **call row of kind** ``prefund``
(``core.ledger.vocab.CallKind``) with one plan, so each move gets what a margin call's step
gets, in the same order and by the same code:

1. :func:`prefund_id`: a unique id, ``pf-<UTC date>-<16 hex>``, a hash of the desk, the
   deadline, the scenarios and the moves. The same recommendation on the same day gets the
   same id, so a second ``--apply`` of it finds the first on record and sends nothing twice
   (a crashed one is finished, never restarted);
2. :func:`prefund_plan`: each move becomes plan steps with one leg each, built from the desk
   route's leg template (``core.routing.from_state.route_template``), amounts exact multiples
   of the asset's step (the advice rounded them to the step). A move over the route's
   per-request maximum or its ``[[preauth]]`` per-transfer cap is cut into steps of at most
   that size by the router's own ``core.routing.legs.request_chunks`` (full chunks rounded down
   to the step, then the rest): the gate would refuse the whole move otherwise;
3. :func:`open_prefund`: the row, a ``PrefundOpened`` event, plan version 1 and ``PlanMade``
   are recorded before anything is sent (``core.ledger.plans``);
4. the executor (``core.execution.executor.Executor``) runs it: intent, the desk's gate
   (allow-list, per-transfer and rolling 24 h caps, **cold-wallet quotas**, withdrawal
   addresses), claim, rate-limit tokens, send, record, audit. A leg the gate refuses is
   recorded ``refused`` with its reason and never sent;
5. no re-plan and no ratio check: a pre-funding has no ratio to restore, so a refused move is
   reported, not replaced by another source (that would be a recommendation the LP did not
   make, possibly through a route the desk keeps for emergencies). Once every leg is final the
   row is closed ``applied`` or ``partial`` with a ``PrefundApplied`` event;
6. :func:`prefund_summary`: what was and was not pre-positioned, read back from the store.

The row's columns, for a pre-funding: ``pool_id`` the destination pool (``*`` when the moves
feed several; ``note`` names them), ``venue_id`` that pool's venue (the first one's),
``target_ratio`` 0 (nothing to restore), ``deficit_usd`` the USD the moves pre-position.

Examples
--------
>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> from core.config import load_desk
>>> from core.stress.prefund import PrefundAdvice, Prepositioning
>>> desk = load_desk("examples/desk.toml")
>>> state = desk.initial_portfolio(datetime(2026, 11, 27, tzinfo=UTC))
>>> move = Prepositioning("b.spot-options.usdt", "sim-b.opt", "sim-b", "spot", "sim-b",
...                       "options", "USDT", Decimal("1500000"), Decimal("1500000"), Decimal(0))
>>> advice = PrefundAdvice(60.0, (move,), Decimal(0), {}, {}, "covered")
>>> plan = prefund_plan(desk, state, advice, "pf-1", scenarios=["halt+crash@sim-b"])
>>> [(a.source, a.legs[0].amount) for a in plan.allocations]  # per-transfer cap 1 M USD
[('sim-b.opt:b.spot-options.usdt', Decimal('1000000')), ('sim-b.opt:b.spot-options.usdt', Decimal('500000'))]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import Session, select

from core.clock import Clock
from core.config import DeskConfig, RouteCfg
from core.domain import Portfolio
from core.errors import DataError, ExecutionError
from core.execution.events import PlanMade, PrefundOpened, derive_event_id, record_event
from core.ledger.chain import AuditKey
from core.ledger.plans import RecordedPlan, load_plan, record_margin_call, record_plan
from core.ledger.store import ensure_venue, session_scope
from core.ledger.tables import MarginCallRow, TransferRow
from core.ledger.vocab import (
    CallKind,
    CallStatus,
    PlanStatus,
    TransferMode,
    TransferState,
    VenueMode,
)
from core.routing.from_state import asset_step, route_template
from core.routing.legs import Leg, book_usd, legs_for, request_chunks
from core.routing.plan import Allocation, CallOutcome, Plan
from core.routing.sources import Policy, Tier
from core.stress.prefund import PrefundAdvice, Prepositioning, collateral_rate

__all__ = [
    "MoveOutcome",
    "PrefundSummary",
    "open_prefund",
    "open_prefunds",
    "prefund_id",
    "prefund_plan",
    "prefund_summary",
    "refuse_while_open",
]

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
_SEVERAL_POOLS = "*"


def prefund_id(
    desk: DeskConfig, advice: PrefundAdvice, scenarios: Sequence[str], *, at: datetime
) -> str:
    """The recommendation's id: ``pf-<UTC date of at>-<64 bits of SHA-256>`` over the desk's
    name, the deadline, the scenarios (in any order) and every move (route, pool, asset,
    amount). A margin call id's alphabet and width (``core.ledger.keys``), so its legs get keys.

    >>> from datetime import UTC
    >>> from core.config import load_desk
    >>> desk = load_desk("examples/desk.toml")
    >>> advice = PrefundAdvice(60.0, (), Decimal(0), {}, {}, "nothing_to_do")
    >>> prefund_id(desk, advice, ["b", "a"], at=datetime(2026, 11, 27, tzinfo=UTC))
    'pf-20261127-7b4f43231d7e606f'
    """
    blob = json.dumps(
        {
            "desk": desk.desk.name,
            "deadline_s": advice.deadline_s,
            "scenarios": sorted(scenarios),
            "moves": [[m.route_id, m.pool_id, m.asset, str(m.amount)] for m in advice.moves],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    if at.tzinfo is None or at.utcoffset() is None:
        raise DataError("a pre-funding's instant must carry a timezone", at=str(at))
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"pf-{at.astimezone(UTC):%Y%m%d}-{digest}"


def _route(desk: DeskConfig, move: Prepositioning) -> RouteCfg:
    route = desk.route(move.route_id)
    if route is None:
        raise DataError("pre-funding move names a route the desk does not declare",
                        route=move.route_id, pool=move.pool_id)  # fmt: skip
    return route


def _chunk_usd(desk: DeskConfig, route: RouteCfg) -> Decimal | None:
    """The largest USD one request of ``route`` may move: its ``per_request_max_usd`` and its
    allow-list entry's ``per_transfer_usd``, whichever is lower (None: no limit)."""
    caps = [route.per_request_max_usd]
    entry = desk.preauth_for(route.id)
    if entry is not None:
        caps.append(entry.per_transfer_usd)
    known = [c for c in caps if c is not None]
    return min(known) if known else None


def prefund_plan(
    desk: DeskConfig,
    state: Portfolio,
    advice: PrefundAdvice,
    call_id: str,
    *,
    scenarios: Sequence[str],
    carry_bps: float = 1.0,
    solve_ms: float = 0.0,
) -> Plan:
    """The plan executing ``advice`` as pre-funding ``call_id``: one step per move, or per
    chunk of a move over its route's per-request or per-transfer cap; one leg per step.

    Each leg moves an exact multiple of the asset's step, valued at ``state``'s price (the
    price the advice used). ``credit_usd`` is the USD times the pool's collateral rate of the
    asset (the LP's figure); ``cost_usd`` the route's fees.

    Raises
    ------
    DataError
        The advice is empty, or a move names a route the desk no longer declares, or an amount
        the route's step cannot book exactly.
    """
    if not advice.moves:
        raise DataError("nothing to pre-position: the advice has no move", call=call_id)
    steps: list[Allocation] = []
    for m in advice.moves:
        route = _route(desk, m)
        price = state.price(m.asset, where=f"route {route.id}").mark
        template = route_template(desk, route, price)
        step = asset_step(desk, m.asset)
        mode = TransferMode.WITHDRAWAL if route.kind == "onchain" else TransferMode.TRANSFER
        whole = m.amount * price
        cap = _chunk_usd(desk, route)
        chunks = (
            (whole,)
            if cap is None
            else request_chunks((template,), whole, cap, min_ticket_usd=route.min_ticket_usd)
        )
        booked = [legs_for((template,), usd, _ZERO) for usd in chunks]
        moved = sum((legs[0].amount for legs, _ in booked if legs), _ZERO)
        if not chunks or moved != m.amount or any(len(legs) != 1 for legs, _ in booked):
            raise DataError("move cannot be booked in whole steps of its asset under its cap",
                            route=route.id, amount=m.amount, step=step, cap_usd=cap)  # fmt: skip
        for legs, usd in booked:
            rate = Decimal(repr(collateral_rate(desk, m.asset)))
            steps.append(
                Allocation(
                    call=call_id,
                    source=f"{m.pool_id}:{route.id}",
                    tier=int(Tier.TRANSFER),
                    mode=mode.value,
                    amount_usd=usd,
                    credit_usd=book_usd(usd * rate),
                    cost_usd=book_usd(usd * route.fee_bps / _BPS + route.fee_usd),
                    eta_s=route.latency_s,
                    requests=1,
                    latency_s=route.latency_s,
                    binding="prefund",
                    venue=route.venue,
                    legs=legs,
                )
            )
    total = sum((a.amount_usd for a in steps), _ZERO)
    credit = sum((a.credit_usd for a in steps), _ZERO)
    cost = sum((a.cost_usd for a in steps), _ZERO)
    outcome = CallOutcome(call=call_id, deficit_usd=total, credit_usd=credit, cost_usd=cost,
                          uncovered_usd=_ZERO, shadow_price_usd_per_usd=None,
                          deadline_s=advice.deadline_s)  # fmt: skip
    config = (
        f"prefund(deadline_s={advice.deadline_s:g}, carry_bps={carry_bps:g}, "
        f"scenarios={sorted(scenarios)!r})"
    )
    return Plan(
        status=PlanStatus.OPTIMAL.value, policy=Policy.COST, cost_usd=cost, credit_usd=credit,
        uncovered_usd=_ZERO, allocations=tuple(steps), calls=(outcome,), solve_ms=solve_ms,
        other_policy=None, method="prefund", fallback_reason=None, problem_id=call_id,
        solves=1, stages=(), config=config, notes=tuple(advice.lines()),
    )  # fmt: skip


def open_prefunds(session: Session, *, other_than: str | None = None) -> list[str]:
    """Ids of the pre-fundings still open (legs in flight, or never run), oldest first."""
    stmt = (
        select(MarginCallRow.id)
        .where(MarginCallRow.kind == CallKind.PREFUND.value)
        .where(MarginCallRow.status == CallStatus.OPEN.value)
        .order_by(MarginCallRow.raised_at)  # type: ignore[arg-type]
    )
    return [cid for cid in session.exec(stmt).all() if cid != other_than]


def refuse_while_open(session: Session, *, other_than: str | None = None) -> None:
    """Refuse a new pre-funding while another is open: its legs may yet move, and a new advice
    computed without them would move the same collateral twice.

    Raises
    ------
    ExecutionError
        Naming the open pre-funding and the command that finishes it; nothing is sent.
    """
    others = open_prefunds(session, other_than=other_than)
    if others:
        raise ExecutionError(
            f"pre-funding {others[0]} is still open: `pmr execute --desk FILE --plan "
            f"{others[0]}` finishes it before another is applied; nothing sent"
        )


def open_prefund(
    engine: Engine,
    desk: DeskConfig,
    state: Portfolio,
    advice: PrefundAdvice,
    scenarios: Sequence[str],
    *,
    clock: Clock,
    audit_key: AuditKey | None,
    carry_bps: float = 1.0,
    solve_ms: float = 0.0,
) -> tuple[MarginCallRow, RecordedPlan, bool]:
    """Record ``advice`` as a pre-funding with its plan version 1, or find it on record:
    (row, plan, created). Nothing is sent.

    A pre-funding recorded under the same id (the same recommendation, the same day) is
    returned as it is, open or closed: the caller executes an open one (the executor finishes
    what a crashed run left) and reports a closed one. Another pre-funding still open is
    refused: its legs may yet move, and this advice was computed without them.

    Raises
    ------
    ExecutionError
        Another pre-funding is still open (:func:`refuse_while_open`); nothing is recorded.
    DataError
        The advice has no move, or names a route the desk no longer declares.
    """
    at = clock.now()
    cid = prefund_id(desk, advice, scenarios, at=at)
    plan = prefund_plan(desk, state, advice, cid, scenarios=scenarios, carry_bps=carry_bps,
                        solve_ms=solve_ms)  # fmt: skip
    pools = sorted({m.pool_id for m in advice.moves})
    total = plan.calls[0].deficit_usd
    row = MarginCallRow(
        id=cid, kind=CallKind.PREFUND.value,
        pool_id=pools[0] if len(pools) == 1 else _SEVERAL_POOLS,
        venue_id=desk.pool(pools[0]).venue, status=CallStatus.OPEN.value, raised_at=at,
        ratio_at_raise=None, target_ratio=_ZERO, deficit_usd=total,
        note=f"pre-funding of {', '.join(pools)} for {len(scenarios)} scenario(s) within "
        f"{advice.deadline_s:g} s",
    )  # fmt: skip
    with session_scope(engine) as s:
        refuse_while_open(s, other_than=cid)
        for v in desk.venues:
            mode = VenueMode.SIM if v.kind == "sim" else VenueMode.LIVE
            ensure_venue(s, v.name, exchange=v.kind, mode=mode, at=at)
        call, created = record_margin_call(s, row)
        if call.kind != CallKind.PREFUND.value:  # pragma: no cover - ids differ by prefix
            raise ExecutionError(f"{cid} is a margin call, not a pre-funding; nothing sent")
        if created:
            ts = clock.timestamp_ns()
            record_event(s, PrefundOpened(
                event_id=derive_event_id(PrefundOpened, cid), ts_event=ts, ts_init=ts,
                margin_call_id=cid, pools=", ".join(pools), scenarios=_names(scenarios),
                deadline_s=Decimal(f"{advice.deadline_s:g}"), n_moves=len(advice.moves),
                amount_usd=total, cost_usd=plan.cost_usd, advice_status=advice.status,
            ), key=audit_key)  # fmt: skip
        s.expunge(call)
    with session_scope(engine) as s:
        existing = load_plan(s, cid, 1)
        if existing is not None:
            return call, existing, created
        recorded, made = record_plan(s, cid, plan, version=1, at=at)
        if made:
            ts = clock.timestamp_ns()
            record_event(s, PlanMade(
                event_id=derive_event_id(PlanMade, cid, 1), ts_event=ts, ts_init=ts,
                margin_call_id=cid, plan_id=recorded.plan_id, plan_version=1,
                latency_ms=Decimal(str(round(solve_ms, 3))), policy=plan.policy.value,
                status=PlanStatus.OPTIMAL, deficit_usd=total, credit_usd=plan.credit_usd,
                cost_usd=plan.cost_usd, uncovered_usd=_ZERO,
                n_steps=len(recorded.plan.allocations),
            ), key=audit_key)  # fmt: skip
    return call, recorded, created


def _names(scenarios: Sequence[str]) -> str:
    """The scenario names for the audit row (free text of at most 2,000 characters)."""
    text = ", ".join(scenarios)
    if len(text) <= 2000:
        return text
    return text[:1960].rsplit(", ", 1)[0] + f", … ({len(scenarios)} in all)"


# ---------------------------------------------------------------------------- the outcome


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """One recommended move as executed: how much of it is in the pool, and why the rest is not.

    ``amount`` is the move's asset amount (the sum of its steps); ``moved`` what confirmed
    legs put in the pool; ``not_moved`` what refused or failed legs did not, with their
    reasons; ``in_flight`` what is neither yet (``pmr execute --resume`` finishes it).
    """

    source_id: str
    route_id: str
    pool_id: str
    venue: str
    from_wallet: str
    to_venue: str
    to_wallet: str
    asset: str
    amount: Decimal
    moved: Decimal
    not_moved: Decimal
    in_flight: Decimal
    legs: int
    reasons: tuple[str, ...]

    def lines(self) -> list[str]:
        """``pre-positioned …`` and/or ``not pre-positioned …: reason`` (and ``in flight``)."""
        where = (
            f"from {self.venue}/{self.from_wallet} to {self.to_venue}/{self.to_wallet} "
            f"({self.pool_id}, route {self.route_id})"
        )
        out = []
        if self.moved:
            out.append(f"pre-positioned {_amount(self.moved)} {self.asset} {where}")
        if self.not_moved:
            why = "; ".join(self.reasons) or "refused or failed"
            out.append(f"not pre-positioned {_amount(self.not_moved)} {self.asset} {where}: {why}")
        if self.in_flight:
            out.append(
                f"in flight {_amount(self.in_flight)} {self.asset} {where}: "
                "`pmr execute --resume` finishes it"
            )
        return out


def _amount(value: Decimal) -> str:
    """``1,102,543.6`` (no exponent, no trailing zeros)."""
    return format(value.normalize(), ",f") if value else "0"


@dataclass(frozen=True, slots=True)
class PrefundSummary:
    """A pre-funding read back from the store: its status, each move's outcome, its legs."""

    prefund_id: str
    status: str
    moves: tuple[MoveOutcome, ...]
    moved_usd: Decimal
    planned_usd: Decimal
    legs_by_state: Mapping[str, int]

    def lines(self) -> list[str]:
        """Each move's outcome, then ``applied; 2 leg(s): 2 confirmed; moved … of … USD``."""
        out = [line for m in self.moves for line in m.lines()]
        legs = sum(self.legs_by_state.values())
        states = ", ".join(f"{n} {s}" for s, n in self.legs_by_state.items())
        out.append(
            f"{self.status}; {legs} leg(s): {states}; moved {self.moved_usd:,.2f} of "
            f"{self.planned_usd:,.2f} USD"
        )
        return out


@dataclass
class _Tally:
    """One move's legs added up while reading the store."""

    leg: Leg
    amount: Decimal = _ZERO
    moved: Decimal = _ZERO
    not_moved: Decimal = _ZERO
    in_flight: Decimal = _ZERO
    legs: int = 0
    reasons: list[str] = field(default_factory=list)

    def outcome(self, source: str) -> MoveOutcome:
        pool_id, _, route_id = source.partition(":")
        g = self.leg
        return MoveOutcome(
            source_id=source, route_id=route_id, pool_id=pool_id, venue=g.venue,
            from_wallet=g.from_wallet.value, to_venue=g.destination_venue,
            to_wallet=g.to_wallet.value, asset=g.asset, amount=self.amount, moved=self.moved,
            not_moved=self.not_moved, in_flight=self.in_flight, legs=self.legs,
            reasons=tuple(dict.fromkeys(self.reasons)),
        )  # fmt: skip


def prefund_summary(session: Session, prefund_id_: str) -> PrefundSummary:
    """What pre-funding ``prefund_id_`` moved and did not, leg by leg from the store.

    Raises
    ------
    DataError
        No pre-funding of that id, or no plan recorded for it.
    """
    call = session.get(MarginCallRow, prefund_id_)
    if call is None or call.kind != CallKind.PREFUND.value:
        raise DataError("no pre-funding of this id in the store", prefund=prefund_id_)
    recorded = load_plan(session, prefund_id_, 1)
    if recorded is None:
        raise DataError("no plan recorded for this pre-funding", prefund=prefund_id_)
    rows = {
        t.idempotency_key: t
        for t in session.exec(
            select(TransferRow).where(TransferRow.margin_call_id == prefund_id_)
        ).all()
    }
    closed = call.status != CallStatus.OPEN.value
    tallies: dict[str, _Tally] = {}
    states: dict[str, int] = {}
    moved_usd = planned_usd = _ZERO
    for step_no, a in enumerate(recorded.plan.allocations):
        for leg in a.legs:
            g = tallies.setdefault(a.source, _Tally(leg))
            g.amount += leg.amount
            g.legs += 1
            t = rows.get(recorded.leg_key(step_no, leg.leg_no))
            state = TransferState.PENDING if t is None else TransferState(t.status)
            label = "not started" if t is None else state.value
            states[label] = states.get(label, 0) + 1
            if leg.leg_no == 0:
                planned_usd += leg.amount_usd
            if state is TransferState.CONFIRMED:
                g.moved += leg.amount
                moved_usd += leg.amount_usd
            elif state in (TransferState.REFUSED, TransferState.FAILED):
                g.not_moved += leg.amount
                why = (t.error_message if t is not None else None) or state.value
                g.reasons.append(f"{state.value}: {why}")
            elif t is None and closed:  # a later step of a move refused or failed
                g.not_moved += leg.amount
                g.reasons.append("not started after an earlier step of the move stopped")
            else:
                g.in_flight += leg.amount
    moves = tuple(g.outcome(source) for source, g in tallies.items())
    return PrefundSummary(prefund_id_, call.status, moves, moved_usd, planned_usd, states)
