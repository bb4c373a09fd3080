"""Typed audit events of a margin call's life (DESIGN §7), and the one serialiser to an audit row.

STYLE 8: events are past tense, immutable, and each has an id plus ``ts_event`` (when it
happened) and ``ts_init`` (when we recorded it), in integer nanoseconds. The audit row *is* the
event's serialisation and the hash chain covers it, so this module owns both directions:
``audit_record`` / ``record_event`` turn an event into an ``audit_event`` row, and
``event_from_row`` reads the row back into the same event (a round trip the tests hold exact).

Every decision and every movement is an event:

==================  =============================================  ====================
event               when                                            ``result``
==================  =============================================  ====================
MarginCallRaised    a pool fell below its call level                ``raised``
PlanMade            the router produced plan version *n* of a call  the plan's status
LegRefused          a gate (allow-list, cap, quota) denied a leg    ``refused``
LegSent             the leg's request left for the venue            ``sent``
LegConfirmed        the venue credited the destination              ``confirmed``
LegFailed           the venue said no; funds stayed at the origin   ``failed``
LegUnknown          the request left and no answer came back        ``unknown``
LegResolved         a lookup by key settled an unknown leg          ``confirmed``/``failed``
RatioRestored       the pool is back at or above its target ratio   ``restored``
CallEscalated       the desk gave up curing automatically           ``escalated``
PrefundOpened       a pre-funding run was recorded for execution    ``opened``
PrefundApplied      every leg of a pre-funding run is final         ``applied``/``partial``
==================  =============================================  ====================

A pre-funding run (``pmr prefund --apply``, ``core.execution.prefund``) is a ``margin_call`` row
of kind ``prefund``: ``PrefundOpened`` and ``PrefundApplied`` take the places of
``MarginCallRaised`` and ``RatioRestored``/``CallEscalated`` around the same plan and leg events.

Each row is tagged with the origin (``margin_call_id``, ``plan_id`` and ``plan_version``,
``step_no`` / ``leg_no``, ``transfer_key``, ``source_id``), the ``mode`` (``pnl_offset``,
``in_place``, ``transfer``, ``swap``, ``withdrawal``), ``latency_ms`` and ``result``; the tags
a kind does not use are stored as null, so every row has the same keys for the SQL views
(``sql/views.sql``). The call, plan and leg key are the row's reference columns; everything else
is the payload. Amounts are ``Decimal`` (stored as exact strings); floats are refused.

Examples
--------
>>> from decimal import Decimal
>>> e = MarginCallRaised(
...     event_id=derive_event_id(MarginCallRaised, "mc-1"), ts_event=1_000, ts_init=1_200,
...     margin_call_id="mc-1", pool_id="sim-a.pm", venue_id="sim-a", ratio=Decimal("1.08"),
...     target_ratio=Decimal("1.25"), deficit_usd=Decimal("50000"),
... )
>>> record = audit_record(e)
>>> record.kind, record.refs["margin_call_id"], record.payload["result"]
('MarginCallRaised', 'mc-1', 'raised')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.errors import DataError
from core.ledger.audit_log import append_audit_event
from core.ledger.chain import AuditKey
from core.ledger.tables import AuditEventRow
from core.ledger.vocab import PlanStatus, TransferMode

__all__ = [
    "EVENT_TYPES",
    "AuditRecord",
    "AuditedEvent",
    "CallEscalated",
    "LegConfirmed",
    "LegEvent",
    "LegFailed",
    "LegOutcome",
    "LegRefused",
    "LegResolved",
    "LegSent",
    "LegUnknown",
    "MarginCallRaised",
    "PlanMade",
    "PrefundApplied",
    "PrefundOpened",
    "RatioRestored",
    "audit_record",
    "derive_event_id",
    "event_from_row",
    "record_event",
]

#: Fields stored in the row's own columns rather than in the payload.
_ID_FIELDS = ("event_id", "ts_event", "ts_init")
_REF_FIELDS = ("margin_call_id", "plan_id", "transfer_key")
#: Column widths of ``audit_event`` / ``transfer`` (``core.ledger.tables``) for the ids we store.
_MAX_LEN = {"event_id": 64, "margin_call_id": 64, "plan_id": 64, "transfer_key": 32,
            "venue_id": 64, "to_venue_id": 64, "pool_id": 64, "route_id": 64,
            "source_id": 128, "policy": 16, "error_kind": 64}  # fmt: skip
_TEXT_MAX_LEN = 2000  # free text (reasons, venue error messages)


class LegOutcome(StrEnum):
    """What a lookup by key found for a leg whose outcome was unknown."""

    CONFIRMED = "confirmed"  # the venue did move it
    FAILED = "failed"  # the venue never applied it; funds stayed at the origin


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditedEvent:
    """Fields every audit event has: identity, times (int ns) and the origin tags.

    ``margin_call_id``, ``plan_id`` and ``transfer_key`` become the row's reference columns;
    the other tags go into the payload, null where a kind does not use them.
    """

    RESULT: ClassVar[str] = ""

    event_id: str
    ts_event: int
    ts_init: int
    margin_call_id: str | None = None
    plan_id: str | None = None
    plan_version: int | None = None
    step_no: int | None = None
    leg_no: int | None = None
    transfer_key: str | None = None
    source_id: str | None = None
    mode: TransferMode | None = None
    latency_ms: Decimal | None = None

    def __post_init__(self) -> None:
        for name, base, optional in _field_specs(type(self)):
            value = _coerce(self, name, base, optional, getattr(self, name))
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        """Rules across fields; a kind with more of them overrides this (and calls the base's
        rules through ``_check_origin``: slotted dataclasses cannot use bare ``super()``)."""
        _check_origin(self)

    @property
    def kind(self) -> str:
        """The event's name, stored in ``audit_event.kind``."""
        return type(self).__name__

    @property
    def result(self) -> str:
        """The outcome tag stored in the payload (``raised``, ``sent``, ``confirmed`` ...)."""
        return self.RESULT


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginCallRaised(AuditedEvent):
    """A pool fell below its call level and a margin call was recorded."""

    RESULT: ClassVar[str] = "raised"

    pool_id: str
    venue_id: str
    ratio: Decimal | None  # None when the pool's maintenance margin is 0
    target_ratio: Decimal
    deficit_usd: Decimal

    def _check(self) -> None:
        _check_origin(self)
        _require(self, "margin_call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanMade(AuditedEvent):
    """The router produced plan ``plan_version`` for the call; ``latency_ms`` is its solve time."""

    policy: str
    status: PlanStatus
    deficit_usd: Decimal
    credit_usd: Decimal
    cost_usd: Decimal
    uncovered_usd: Decimal
    n_steps: int
    reason: str | None = None  # why a re-plan: the leg or source that failed

    def _check(self) -> None:
        _check_origin(self)
        _require(self, "margin_call_id", "plan_id", "plan_version")

    @property
    def result(self) -> str:
        return self.status.value


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEvent(AuditedEvent):
    """Base of the leg events: which movement, from where to where, of how much.

    A planned leg carries its call, plan, version, step, leg and source; a manual transfer
    carries none of them, only its ``transfer_key``.
    """

    venue_id: str
    from_wallet: WalletKind
    to_venue_id: str
    to_wallet: WalletKind
    asset: Asset
    amount: Decimal
    amount_usd: Decimal | None = None
    route_id: str | None = None  # the desk route or swap the leg uses

    def _check(self) -> None:
        _check_leg(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRefused(LegEvent):
    """A gate denied the leg (STYLE 14: gates deny, they don't throw); nothing was sent."""

    RESULT: ClassVar[str] = "refused"

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegSent(LegEvent):
    """The leg's request left for the venue; ``latency_ms`` is the wait since its intent row
    (rate-limit tokens included)."""

    RESULT: ClassVar[str] = "sent"

    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LegConfirmed(LegEvent):
    """The venue credited the destination; ``latency_ms`` runs from send to its answer."""

    RESULT: ClassVar[str] = "confirmed"

    venue_transfer_id: str | None = None
    cost_usd: Decimal | None = None  # fees and conversion cost, when the leg had any


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFailed(LegEvent):
    """The venue refused or failed the leg; funds stayed at the origin."""

    RESULT: ClassVar[str] = "failed"

    error_kind: str
    error_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegUnknown(LegEvent):
    """The request left and no answer came back: look it up by key before anything else."""

    RESULT: ClassVar[str] = "unknown"

    error_kind: str
    error_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegResolved(LegEvent):
    """A lookup by key settled an unknown leg; ``latency_ms`` is the lookup's."""

    outcome: LegOutcome
    venue_transfer_id: str | None = None
    cost_usd: Decimal | None = None

    @property
    def result(self) -> str:
        return self.outcome.value


@dataclass(frozen=True, slots=True, kw_only=True)
class RatioRestored(AuditedEvent):
    """The pool is back at or above its target; ``latency_ms`` runs from the call's raise."""

    RESULT: ClassVar[str] = "restored"

    pool_id: str
    ratio: Decimal
    target_ratio: Decimal

    def _check(self) -> None:
        _check_origin(self)
        _require(self, "margin_call_id")
        if self.ratio < self.target_ratio:
            raise DataError(
                "RatioRestored needs ratio >= target_ratio", ratio=self.ratio,
                target_ratio=self.target_ratio, event_id=self.event_id,
            )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEscalated(AuditedEvent):
    """The desk stopped curing automatically and handed the call to a person."""

    RESULT: ClassVar[str] = "escalated"

    pool_id: str
    ratio: Decimal | None
    uncovered_usd: Decimal
    reason: str

    def _check(self) -> None:
        _check_origin(self)
        _require(self, "margin_call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefundOpened(AuditedEvent):
    """A pre-funding recommendation was recorded for execution under ``margin_call_id``.

    ``scenarios`` names the scenarios it covers within ``deadline_s``; ``amount_usd`` is what
    its moves pre-position, ``cost_usd`` their fees; ``advice_status`` is the checked advice's
    ``covered`` or ``partial`` (``core.stress.prefund.PrefundAdvice``).
    """

    RESULT: ClassVar[str] = "opened"

    pools: str
    scenarios: str
    deadline_s: Decimal
    n_moves: int
    amount_usd: Decimal
    cost_usd: Decimal
    advice_status: str

    def _check(self) -> None:
        _check_origin(self)
        _require(self, "margin_call_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefundApplied(AuditedEvent):
    """Every leg of a pre-funding run is final; ``latency_ms`` runs from its opening.

    ``applied`` when every planned leg was confirmed, ``partial`` when some were refused (a
    cap, a cold-wallet quota), failed, or not started (the later steps of such a move): those
    moves were not made, and are not re-planned.
    """

    moved_usd: Decimal
    not_moved_usd: Decimal
    legs_confirmed: int
    legs_refused: int
    legs_failed: int
    legs_not_started: int = 0  # later steps of a refused or failed move

    def _check(self) -> None:
        _check_origin(self)
        _require(self, "margin_call_id")

    @property
    def result(self) -> str:
        stopped = self.legs_refused + self.legs_failed + self.legs_not_started
        return "applied" if stopped == 0 and self.not_moved_usd == 0 else "partial"


#: Event kinds by the name stored in ``audit_event.kind``.
EVENT_TYPES: dict[str, type[AuditedEvent]] = {
    cls.__name__: cls
    for cls in (
        MarginCallRaised,
        PlanMade,
        LegRefused,
        LegSent,
        LegConfirmed,
        LegFailed,
        LegUnknown,
        LegResolved,
        RatioRestored,
        CallEscalated,
        PrefundOpened,
        PrefundApplied,
    )
}


# -- validation ---------------------------------------------------------------------------
_SPECS: dict[type[AuditedEvent], tuple[tuple[str, type, bool], ...]] = {}


def _field_specs(cls: type[AuditedEvent]) -> tuple[tuple[str, type, bool], ...]:
    """``(name, base type, optional)`` of each field of ``cls``, from its annotations (cached:
    every event construction reads them)."""
    cached = _SPECS.get(cls)
    if cached is not None:
        return cached
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        hint = hints[f.name]
        args = get_args(hint) if get_origin(hint) in (Union, UnionType) else ()
        base = next((a for a in args if a is not type(None)), hint)
        specs.append((f.name, base, type(None) in args))
    _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


def _coerce(event: AuditedEvent, name: str, base: type, optional: bool, value: Any) -> Any:
    """Check one field against its declared type and return it in canonical form."""
    ctx = {"event": event.kind, "field": name}
    if value is None:
        if optional:
            return None
        raise DataError("missing value", **ctx)
    if base is Decimal:
        return _decimal(value, name == "amount", ctx)
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError("must be an integer >= 0", value=repr(value), **ctx)
        return value
    if base is str:
        limit = _MAX_LEN.get(name, _TEXT_MAX_LEN)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise DataError(f"must be non-empty text of at most {limit} characters",
                            value=repr(value)[:80], **ctx)  # fmt: skip
        return value
    if base is Asset:
        return value if isinstance(value, Asset) else Asset(str(value))
    if isinstance(base, type) and issubclass(base, Enum):
        try:
            return base(value)
        except ValueError:
            raise DataError(f"not a {base.__name__}", value=repr(value), **ctx) from None
    raise DataError(f"unsupported field type {base!r}", **ctx)  # pragma: no cover - a new field


def _decimal(value: Any, positive: bool, ctx: dict[str, str]) -> Decimal:
    """A finite Decimal >= 0 (> 0 for an amount); floats refused, as in the audit payload."""
    if isinstance(value, bool | float):
        raise DataError("must be a Decimal (floats are not booked)", value=repr(value), **ctx)
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, TypeError):
        raise DataError("not a number", value=repr(value), **ctx) from None
    if not number.is_finite() or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise DataError(f"must be a finite number {bound}", value=str(number), **ctx)
    return number


def _require(event: AuditedEvent, *names: str) -> None:
    missing = [n for n in names if getattr(event, n) is None]
    if missing:
        raise DataError(f"{event.kind} needs {', '.join(missing)}", event_id=event.event_id)


def _check_origin(event: AuditedEvent) -> None:
    """A plan version, step or leg only means something inside a plan of a margin call."""
    if event.plan_version == 0:
        raise DataError("plan versions start at 1", event_id=event.event_id)
    if event.plan_id is not None or event.plan_version is not None:
        _require(event, "margin_call_id", "plan_id", "plan_version")
    if event.step_no is not None or event.leg_no is not None:
        _require(event, "plan_id", "step_no", "leg_no")


def _check_leg(event: LegEvent) -> None:
    _check_origin(event)
    _require(event, "transfer_key", "mode")
    if event.margin_call_id is not None:
        _require(event, "plan_id", "plan_version", "step_no", "leg_no", "source_id")


# -- serialisation ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An event as ``append_audit_event`` takes it: ids, times, reference columns, payload."""

    event_id: str
    kind: str
    ts_event: int
    ts_init: int
    refs: dict[str, str | None]
    payload: dict[str, Any]


def _plain(value: Any) -> Any:
    return value.code if isinstance(value, Asset) else value


def audit_record(event: AuditedEvent) -> AuditRecord:
    """The one serialisation of ``event`` into an audit row's columns and payload."""
    payload: dict[str, Any] = {
        name: _plain(getattr(event, name))
        for name, _base, _opt in _field_specs(type(event))
        if name not in _ID_FIELDS and name not in _REF_FIELDS
    }
    payload["result"] = event.result
    return AuditRecord(
        event_id=event.event_id,
        kind=event.kind,
        ts_event=event.ts_event,
        ts_init=event.ts_init,
        refs={name: getattr(event, name) for name in _REF_FIELDS},
        payload=payload,
    )


def record_event(session: Session, event: AuditedEvent, *, key: AuditKey | None) -> AuditEventRow:
    """Append ``event`` to the audit chain (see ``core.ledger.audit_log.append_audit_event``).

    Recording the same event again returns the stored row; another event under the same
    ``event_id`` is refused, naming the fields that differ.
    """
    r = audit_record(event)
    return append_audit_event(
        session, event_id=r.event_id, kind=r.kind, ts_event=r.ts_event, ts_init=r.ts_init,
        payload=r.payload, key=key, **r.refs,
    )  # fmt: skip


def event_from_row(row: AuditEventRow) -> AuditedEvent:
    """Read a stored audit row back into its typed event.

    Raises
    ------
    DataError
        The row's kind is not one of ``EVENT_TYPES`` (an event of an older release, say), its
        payload does not fit the kind, or its stored ``result`` contradicts the event.
    """
    cls = EVENT_TYPES.get(row.kind)
    if cls is None:
        raise DataError("not a typed audit event kind", kind=row.kind, seq=row.seq)
    payload = dict(row.payload)
    stored_result = payload.pop("result", None)
    names = {name for name, _b, _o in _field_specs(cls)}
    unknown = sorted(set(payload) - names)
    if unknown:
        raise DataError(f"payload keys not in {row.kind}: {', '.join(unknown)}", seq=row.seq)
    values: dict[str, Any] = {
        "event_id": row.event_id,
        "ts_event": row.ts_event,
        "ts_init": row.ts_init,
        "margin_call_id": row.margin_call_id,
        "plan_id": row.plan_id,
        "transfer_key": row.transfer_key,
        **payload,
    }
    event = cls(**values)
    if stored_result != event.result:
        raise DataError("stored result contradicts the event", seq=row.seq,
                        stored=stored_result, derived=event.result)  # fmt: skip
    return event


def derive_event_id(kind: type[AuditedEvent] | str, *parts: str | int) -> str:
    """A deterministic event id: the kind and 96 bits of SHA-256 over ``parts``.

    The same decision or movement (kind + call + version + step + leg ...) always gets the same
    id, so a retried task's event is recognised by ``append_audit_event`` instead of recorded
    twice. At most 64 characters (the column's width).

    >>> derive_event_id("LegSent", "mc-1", 1, 0, 0) == derive_event_id(LegSent, "mc-1", 1, 0, 0)
    True
    """
    name = kind if isinstance(kind, str) else kind.__name__
    text = "\x1f".join(["pmr.audit", name, *(str(p) for p in parts)])
    return f"{name[:39]}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:24]}"
