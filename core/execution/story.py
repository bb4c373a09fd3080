"""One margin call's story, read back from the audit trail and the transfer rows.

Why a core function: the post-mortem question "what happened to this call, in what order, how
fast, at what cost" is answered the same way by ``pmr audit show --call``, by a flow's artifact
and by a test, so the reading lives here and the CLI only formats it.

Sources, in order of trust: the call's audit events (typed events through
``core.execution.events.event_from_row``; kinds of older releases, such as
``TransferRequested``, read generically), then the call's ``transfer`` rows, which fill in what
an older event does not say (amount, mode, source, latency) and show as their own lines when a
movement has no audit event at all: a gap worth seeing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from core.errors import DataError
from core.execution.events import (
    EVENT_TYPES,
    AuditedEvent,
    CallEscalated,
    LegConfirmed,
    LegEvent,
    LegFailed,
    LegRefused,
    LegResolved,
    LegUnknown,
    MarginCallRaised,
    PlanMade,
    PrefundApplied,
    PrefundOpened,
    RatioRestored,
    event_from_row,
)
from core.ledger.tables import AuditEventRow, TransferRow

__all__ = ["CallStory", "StoryLine", "call_story", "ns_to_utc"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_EVENT = "(transfer, no audit event)"


def ns_to_utc(ts_ns: int) -> datetime:
    """Integer nanoseconds since the epoch as an aware UTC datetime, exact to the microsecond."""
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


@dataclass(frozen=True, slots=True)
class StoryLine:
    """One row of the story table: an audit event, or a transfer row without one."""

    seq: int | None  # audit seq; None for a transfer row without an event
    at: datetime
    event: str
    plan_version: int | None
    step_no: int | None
    leg_no: int | None
    source_id: str | None
    mode: str | None
    amount: Decimal | None
    asset: str | None
    latency_ms: Decimal | None
    result: str | None
    cost_usd: Decimal | None
    note: str | None

    @property
    def step_leg(self) -> str:
        """``v2 s1.0`` (version 2, step 1, leg 0), as far as known."""
        parts = [] if self.plan_version is None else [f"v{self.plan_version}"]
        if self.step_no is not None:
            leg = "" if self.leg_no is None else f".{self.leg_no}"
            parts.append(f"s{self.step_no}{leg}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class CallStory:
    """A margin call's story and its totals."""

    margin_call_id: str
    lines: tuple[StoryLine, ...]
    outcome: str  # "restored", "escalated", "applied", "partial" or "open"
    elapsed_ms: Decimal | None  # raise (or pre-funding opened) -> its closing event
    plan_versions: tuple[int, ...]
    legs_by_result: Mapping[str, int]  # each leg counted once, by its last event
    delivered_usd: Decimal
    cost_usd: Decimal

    @property
    def kind(self) -> str:
        """``pre-funding`` when the trail opens one (``PrefundOpened``), else ``margin call``."""
        return (
            "pre-funding"
            if any(line.event == PrefundOpened.__name__ for line in self.lines)
            else "margin call"
        )

    def summary(self) -> str:
        """One line for the foot of the table."""
        after = "" if self.elapsed_ms is None else f" after {self.elapsed_ms:,.0f} ms"
        plans = ", ".join(f"v{v}" for v in self.plan_versions) or "none"
        legs = ", ".join(f"{n} {r}" for r, n in sorted(self.legs_by_result.items())) or "none"
        return (
            f"{self.margin_call_id}: {self.outcome}{after}; plans {plans}; legs {legs}; "
            f"delivered {self.delivered_usd:,.2f} USD at a cost of {self.cost_usd:,.2f} USD"
        )


def call_story(session: Session, margin_call_id: str) -> CallStory:
    """Read the story of ``margin_call_id`` from the audit trail and the transfer rows.

    Raises
    ------
    DataError
        Neither an audit event nor a transfer row names the call; or a typed event's row does
        not read back (run ``pmr audit verify``).
    """
    rows = session.exec(
        select(AuditEventRow)
        .where(AuditEventRow.margin_call_id == margin_call_id)
        .order_by(col(AuditEventRow.seq))
    ).all()
    transfers = {
        t.idempotency_key: t
        for t in session.exec(
            select(TransferRow).where(TransferRow.margin_call_id == margin_call_id)
        ).all()
    }
    if not rows and not transfers:
        raise DataError(
            "no audit event or transfer names this margin call", margin_call_id=margin_call_id
        )
    events = [event_from_row(r) if r.kind in EVENT_TYPES else None for r in rows]
    lines = [
        _typed_line(r.seq, e)
        if e is not None
        else _generic_line(r, transfers.get(r.transfer_key or ""))
        for r, e in zip(rows, events, strict=True)
    ]
    audited = {r.transfer_key for r in rows}
    lines += [_transfer_line(t) for key, t in transfers.items() if key not in audited]
    lines.sort(key=lambda line: (line.at, line.seq is None, line.seq or 0))
    typed = [e for e in events if e is not None]
    return CallStory(
        margin_call_id=margin_call_id,
        lines=tuple(lines),
        outcome=_outcome(typed),
        elapsed_ms=_elapsed_ms(typed),
        plan_versions=_plan_versions(typed),
        legs_by_result=_legs_by_result(typed),
        delivered_usd=_delivered_usd(typed),
        cost_usd=_cost_usd(typed),
    )


def _typed_line(seq: int, e: AuditedEvent) -> StoryLine:
    leg = e if isinstance(e, LegEvent) else None
    return StoryLine(
        seq=seq, at=ns_to_utc(e.ts_event), event=e.kind, plan_version=e.plan_version,
        step_no=e.step_no, leg_no=e.leg_no, source_id=e.source_id,
        mode=None if e.mode is None else e.mode.value,
        amount=None if leg is None else leg.amount,
        asset=None if leg is None else leg.asset.code,
        latency_ms=e.latency_ms, result=e.result, cost_usd=_cost_of(e), note=_note(e),
    )  # fmt: skip


def _cost_of(e: AuditedEvent) -> Decimal | None:
    if isinstance(e, LegConfirmed | LegResolved | PlanMade):
        return e.cost_usd
    return None


def _note(e: AuditedEvent) -> str | None:
    """The one thing worth reading next to the row."""
    match e:
        case MarginCallRaised():
            ratio = "n/a" if e.ratio is None else f"{e.ratio}"
            return f"{e.pool_id} at {ratio} < {e.target_ratio}: {e.deficit_usd:,} USD short"
        case PlanMade():
            short = f", {e.uncovered_usd:,} USD uncovered" if e.uncovered_usd else ""
            why = f"; {e.reason}" if e.reason else ""
            steps = f"{e.n_steps} step{'' if e.n_steps == 1 else 's'}"
            return f"{e.policy}, {steps}{short}{why}"
        case LegRefused():
            return e.reason
        case LegFailed() | LegUnknown():
            return f"{e.error_kind}: {e.error_message}"
        case LegEvent():
            where = e.venue_id if e.to_venue_id == e.venue_id else f"{e.venue_id}→{e.to_venue_id}"
            return f"{where} {e.from_wallet.value}→{e.to_wallet.value}"
        case RatioRestored():
            return f"{e.pool_id} at {e.ratio} >= {e.target_ratio}"
        case CallEscalated():
            return f"{e.reason}; {e.uncovered_usd:,} USD uncovered"
        case PrefundOpened():
            return (
                f"{e.n_moves} move(s), {e.amount_usd:,} USD into {e.pools} within {e.deadline_s} s"
            )
        case PrefundApplied():
            return f"moved {e.moved_usd:,} USD, not moved {e.not_moved_usd:,} USD"
        case _:  # pragma: no cover - every kind is listed above
            return None


def _text(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return None if value is None else str(value)


def _number(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _generic_line(row: AuditEventRow, transfer: TransferRow | None) -> StoryLine:
    """A row of a kind this release does not type (an older release's event), with what its
    payload says and, through its transfer key, what the transfer row says."""
    p = row.payload
    t = transfer
    return StoryLine(
        seq=row.seq, at=ns_to_utc(row.ts_event), event=row.kind,
        plan_version=None,
        step_no=p.get("step_no", None if t is None else t.step_no),
        leg_no=None,
        source_id=_text(p, "source_id") or (None if t is None else t.source_id),
        mode=_text(p, "mode") or (None if t is None else t.mode),
        amount=_number(p.get("amount", None if t is None else t.amount)),
        asset=_text(p, "asset") or (None if t is None else t.asset),
        latency_ms=_number(p.get("latency_ms")),
        result=_text(p, "result") or _text(p, "status"),
        cost_usd=_number(p.get("cost_usd")),
        note=_text(p, "reason") or _text(p, "note"),
    )  # fmt: skip


def _transfer_line(t: TransferRow) -> StoryLine:
    latency = None if t.latency_ms is None else Decimal(str(t.latency_ms))
    return StoryLine(
        seq=None, at=t.created_at, event=NO_EVENT, plan_version=None, step_no=t.step_no,
        leg_no=None, source_id=t.source_id, mode=t.mode, amount=t.amount, asset=t.asset,
        latency_ms=latency, result=t.status, cost_usd=None,
        note=t.error_message or f"key {t.idempotency_key}",
    )  # fmt: skip


def _plan_versions(events: list[AuditedEvent]) -> tuple[int, ...]:
    versions = {e.plan_version for e in events if isinstance(e, PlanMade)}
    return tuple(sorted(v for v in versions if v is not None))


def _outcome(events: list[AuditedEvent]) -> str:
    for e in reversed(events):
        if isinstance(e, RatioRestored):
            return "restored"
        if isinstance(e, CallEscalated):
            return "escalated"
        if isinstance(e, PrefundApplied):
            return e.result
    return "open"


def _elapsed_ms(events: list[AuditedEvent]) -> Decimal | None:
    raised = next((e for e in events if isinstance(e, MarginCallRaised | PrefundOpened)), None)
    closed = next(
        (
            e
            for e in reversed(events)
            if isinstance(e, RatioRestored | CallEscalated | PrefundApplied)
        ),
        None,
    )
    if raised is None or closed is None:
        return None
    return Decimal(closed.ts_event - raised.ts_event) / Decimal(1_000_000)


def _last_leg_events(events: list[AuditedEvent]) -> dict[str, LegEvent]:
    last: dict[str, LegEvent] = {}
    for e in events:
        if isinstance(e, LegEvent) and e.transfer_key is not None:
            last[e.transfer_key] = e
    return last


def _legs_by_result(events: list[AuditedEvent]) -> dict[str, int]:
    return dict(Counter(e.result for e in _last_leg_events(events).values()))


def _delivered_usd(events: list[AuditedEvent]) -> Decimal:
    done = [e for e in _last_leg_events(events).values() if e.result == "confirmed"]
    return sum((e.amount_usd or Decimal(0) for e in done), Decimal(0))


def _cost_usd(events: list[AuditedEvent]) -> Decimal:
    """What the legs cost (fees, conversion), as the venues reported them."""
    done = [
        e for e in _last_leg_events(events).values() if isinstance(e, LegConfirmed | LegResolved)
    ]
    return sum((e.cost_usd or Decimal(0) for e in done), Decimal(0))
