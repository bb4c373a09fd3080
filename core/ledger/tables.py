"""sqlmodel ``table=True`` classes for the store (DESIGN §8). Rows, not domain objects.

Why separate from ``core.domain``: a row carries storage concerns (surrogate ids, snapshot ids,
foreign keys, enum text) that the value objects must not know about, and the domain objects
carry validation the database cannot express. ``core.ledger.mappers`` converts between them.

Conventions
-----------
- Money and quantities are ``Money`` columns: ``NUMERIC(38, 18)`` on PostgreSQL, exact text on
  SQLite. Amounts named ``*_usd`` are in USD; a bare ``amount`` is in the row's ``asset``.
- Timestamps are ``*_at`` (``TIMESTAMP WITH TIME ZONE``, UTC) or ``ts_*`` (int ns, audit only).
- Closed vocabularies (statuses, modes, wallets) are short strings guarded by ``CHECK``
  constraints generated from the enums in ``core.ledger.vocab`` / ``core.domain``.
- Constraint and index names come from one naming convention so ``sql/schema.sql`` can spell
  them out and a test can compare the two catalogs name by name.
- Nothing here stores credentials: venues are named, never keyed (DESIGN §7).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.domain import (
    InstrumentKind,
    MarginModelKind,
    OptionRight,
    PositionSide,
    Settlement,
    WalletKind,
)
from core.ledger.chain import HashScheme
from core.ledger.coltypes import JsonPayload, Money, UtcDateTime
from core.ledger.vocab import (
    CallKind,
    CallStatus,
    DriftStatus,
    PlanStatus,
    SnapshotSource,
    TransferMode,
    TransferState,
    VenueMode,
    sql_in_list,
)
from core.routing.legs import LegKind

__all__ = [
    "NAMING_CONVENTION",
    "AuditAnchorRow",
    "AuditEventRow",
    "BalanceRow",
    "LedgerTable",
    "MarginCallRow",
    "MarginReportRow",
    "PlanLegRow",
    "PlanRow",
    "PlanStepRow",
    "PositionRow",
    "PriceRow",
    "RateWeightRow",
    "ReconDriftRow",
    "SnapshotRow",
    "StressResultRow",
    "TransferRow",
    "VenueBanRow",
    "VenueRow",
    "WalletRow",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Short string widths, shared so the DDL reads uniformly.
NAME_LEN = 64  # venue / pool / plan / call ids (core.domain name pattern allows 63)
CODE_LEN = 16  # asset codes, wallet kinds, statuses, modes
SYMBOL_LEN = 64  # instrument symbols such as BTC-27MAR26-90000-C
KEY_LEN = 32  # idempotency keys: 128-bit hex, fits OKX clientId (<= 32 alphanumerics)
HASH_LEN = 64  # SHA-256 / HMAC-SHA256 hex


class LedgerTable(
    SQLModel, registry=registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))
):
    """Base of every ledger table: its own metadata, so nothing else shares our DDL."""


def _check(column: str, values: Any, name: str | None = None) -> CheckConstraint:
    return CheckConstraint(sql_in_list(column, values), name=name or column)


# SQLite only auto-assigns keys to a column declared exactly INTEGER PRIMARY KEY (an alias of
# ROWID, already 64-bit); BIGINT there would stay NULL. PostgreSQL gets BIGSERIAL.
_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


def _id() -> Any:
    return Field(default=None, primary_key=True, sa_type=_ID_TYPE)


def _money(*, nullable: bool = False) -> Any:
    return Field(default=None, sa_type=Money, nullable=nullable)


def _at(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UtcDateTime, nullable=nullable, index=index)


def _venue_fk(*, nullable: bool = False) -> Any:
    return Field(default=None, max_length=NAME_LEN, foreign_key="venue.id", nullable=nullable)


class VenueRow(LedgerTable, table=True):
    """A named exchange connection (``binance-main``, ``sim-a``); never its keys."""

    __tablename__ = "venue"
    __table_args__ = (_check("mode", VenueMode),)

    id: str = Field(primary_key=True, max_length=NAME_LEN)
    exchange: str = Field(max_length=32)  # ccxt exchange id, or "sim"
    mode: str = Field(max_length=CODE_LEN)
    created_at: datetime = _at()


class WalletRow(LedgerTable, table=True):
    """A wallet (``spot``, ``um`` ...) of one account on one venue, and the pool it margins."""

    __tablename__ = "wallet"
    __table_args__ = (
        UniqueConstraint("venue_id", "account", "kind"),
        _check("kind", WalletKind),
    )

    id: int | None = _id()
    venue_id: str = _venue_fk()
    account: str = Field(max_length=NAME_LEN)  # "main" or a sub-account label
    kind: str = Field(max_length=CODE_LEN)
    pool_id: str | None = Field(default=None, max_length=NAME_LEN)


class SnapshotRow(LedgerTable, table=True):
    """One read of balances, positions and prices taken at one instant."""

    __tablename__ = "snapshot"
    __table_args__ = (_check("source", SnapshotSource),)

    id: int | None = _id()
    taken_at: datetime = _at(index=True)
    source: str = Field(max_length=CODE_LEN)
    venue_id: str | None = _venue_fk(nullable=True)  # None: a desk-wide snapshot


class BalanceRow(LedgerTable, table=True):
    """A ``core.domain.Balance`` inside a snapshot."""

    __tablename__ = "balance_snapshot"
    __table_args__ = (
        UniqueConstraint("snapshot_id", "venue_id", "wallet", "asset"),
        _check("wallet", WalletKind),
    )

    id: int | None = _id()
    snapshot_id: int = Field(foreign_key="snapshot.id", sa_type=BigInteger, index=True)
    venue_id: str = _venue_fk()
    wallet: str = Field(max_length=CODE_LEN)
    asset: str = Field(max_length=CODE_LEN)
    amount: Decimal = _money()
    loan: Decimal = _money()
    interest: Decimal = _money()


class PositionRow(LedgerTable, table=True):
    """A ``core.domain.Position`` (with its instrument inlined) inside a snapshot.

    ``side`` is the hedge-mode leg (``long``/``short``) or ``both``: the two legs of one symbol
    are two rows, so the natural key includes it.
    """

    __tablename__ = "position_snapshot"
    __table_args__ = (
        UniqueConstraint("snapshot_id", "venue_id", "wallet", "symbol", "side"),
        _check("wallet", WalletKind),
        _check("instrument_kind", InstrumentKind),
        _check("option_right", OptionRight),
        _check("settlement", Settlement),
        _check("side", PositionSide),
    )

    id: int | None = _id()
    snapshot_id: int = Field(foreign_key="snapshot.id", sa_type=BigInteger, index=True)
    venue_id: str = _venue_fk()
    wallet: str = Field(max_length=CODE_LEN)
    symbol: str = Field(max_length=SYMBOL_LEN)
    instrument_kind: str = Field(max_length=CODE_LEN)
    underlying: str = Field(max_length=CODE_LEN)
    quote: str = Field(max_length=CODE_LEN)
    contract_size: Decimal = _money()
    expiry_at: datetime | None = _at(nullable=True)
    strike: Decimal | None = _money(nullable=True)
    option_right: str | None = Field(default=None, max_length=CODE_LEN)
    settlement: str | None = Field(default=None, max_length=CODE_LEN)
    qty: Decimal = _money()  # contracts, signed (long > 0)
    entry_price: Decimal = _money()
    # Last, with a server default, so adding it to a stored table keeps old rows one-way legs.
    side: str = Field(
        default=PositionSide.BOTH.value,
        max_length=CODE_LEN,
        sa_column_kwargs={"server_default": PositionSide.BOTH.value},
    )


class PriceRow(LedgerTable, table=True):
    """A ``core.domain.MarkPrice`` inside a snapshot."""

    __tablename__ = "price_snapshot"
    __table_args__ = (UniqueConstraint("snapshot_id", "symbol"),)

    id: int | None = _id()
    snapshot_id: int = Field(foreign_key="snapshot.id", sa_type=BigInteger, index=True)
    symbol: str = Field(max_length=SYMBOL_LEN)
    mark: Decimal = _money()
    index_price: Decimal | None = _money(nullable=True)
    iv: Decimal | None = _money(nullable=True)  # annualised, 0.55 = 55 %
    priced_at: datetime = _at()


class MarginReportRow(LedgerTable, table=True):
    """A pool's margin report (DESIGN §3.2). Bare figures are in ``margin_currency``."""

    __tablename__ = "margin_report"
    __table_args__ = (_check("model", MarginModelKind),)

    id: int | None = _id()
    pool_id: str = Field(max_length=NAME_LEN, index=True)
    venue_id: str = _venue_fk()
    snapshot_id: int | None = Field(
        default=None, foreign_key="snapshot.id", sa_type=BigInteger, nullable=True
    )
    model: str = Field(max_length=CODE_LEN)
    computed_at: datetime = _at(index=True)
    margin_currency: str = Field(max_length=CODE_LEN)
    equity: Decimal = _money()
    adjusted_equity: Decimal = _money()
    initial_margin: Decimal = _money()
    maint_margin: Decimal = _money()
    ratio: Decimal | None = _money(nullable=True)  # None when maint_margin is 0
    venue_band: str = Field(max_length=CODE_LEN)  # the venue's own band (Binance PM Pro names)
    # The desk's level from the pool's thresholds; margin calls are raised on it. NULL only on
    # rows written before revision 0002, which recorded the venue band alone.
    desk_level: str | None = Field(default=None, max_length=CODE_LEN)
    target_ratio: Decimal = _money()
    deficit_to_target: Decimal = _money()
    equity_usd: Decimal = _money()
    maint_margin_usd: Decimal = _money()
    deficit_usd: Decimal = _money()
    standard_maint_margin: Decimal | None = _money(nullable=True)
    capital_efficiency: Decimal | None = _money(nullable=True)  # standard MM / portfolio MM
    worst_scenario: str | None = Field(default=None, max_length=128)
    detail: dict[str, Any] | None = Field(default=None, sa_type=JsonPayload)


class StressResultRow(LedgerTable, table=True):
    """One (scenario, pool) outcome of a stress run, with time-to-cover (DESIGN §4)."""

    __tablename__ = "stress_result"
    __table_args__ = (UniqueConstraint("run_id", "scenario", "pool_id"),)

    id: int | None = _id()
    run_id: str = Field(max_length=NAME_LEN, index=True)
    scenario: str = Field(max_length=128)
    scenario_kind: str = Field(max_length=32)
    pool_id: str = Field(max_length=NAME_LEN)
    venue_id: str = _venue_fk()
    computed_at: datetime = _at()
    ratio_after: Decimal | None = _money(nullable=True)
    band_after: str = Field(max_length=CODE_LEN)
    deficit_usd: Decimal = _money()
    covered_10s_usd: Decimal = _money()
    covered_60s_usd: Decimal = _money()
    covered_600s_usd: Decimal = _money()
    uncovered_usd: Decimal = _money()
    detail: dict[str, Any] | None = Field(default=None, sa_type=JsonPayload)


_OPEN_CALL = text(f"status = '{CallStatus.OPEN.value}' AND kind = '{CallKind.MARGIN_CALL.value}'")


class MarginCallRow(LedgerTable, table=True):
    """A detected breach of a pool's ``call`` threshold: at most one open call per pool.

    The partial unique index makes detection idempotent: a repeated detection of a breach
    (the monitor's next tick, a second monitor) finds the pool's open call instead of raising
    a second one (``core.ledger.plans.record_margin_call``).

    ``kind`` (revision 0006) is ``margin_call`` or ``prefund``: a pre-funding run is recorded
    as a row of its own kind so its legs get keys, intents, the gate and audit events exactly
    as a margin call's do. The one-open-call index covers margin calls only (a pre-funding
    into a pool must not block, nor be mistaken for, that pool's margin call). A pre-funding
    row's ``pool_id`` is its one destination pool (``*`` when it feeds several, named in
    ``note``), ``target_ratio`` 0 (no ratio to restore) and ``deficit_usd`` the USD it moves.
    """

    __tablename__ = "margin_call"
    __table_args__ = (
        _check("status", CallStatus),
        _check("kind", CallKind),
        Index(
            "uq_margin_call_open_pool_id",
            "pool_id",
            unique=True,
            sqlite_where=_OPEN_CALL,
            postgresql_where=_OPEN_CALL,
        ),
    )

    id: str = Field(primary_key=True, max_length=NAME_LEN)
    pool_id: str = Field(max_length=NAME_LEN, index=True)
    venue_id: str = _venue_fk()
    margin_report_id: int | None = Field(
        default=None, foreign_key="margin_report.id", sa_type=BigInteger, nullable=True
    )
    status: str = Field(max_length=CODE_LEN)
    raised_at: datetime = _at()
    closed_at: datetime | None = _at(nullable=True)
    ratio_at_raise: Decimal | None = _money(nullable=True)
    target_ratio: Decimal = _money()
    deficit_usd: Decimal = _money()
    note: str | None = Field(default=None, sa_type=Text)
    # Revision 0006; rows written before it are margin calls (the server default).
    kind: str = Field(
        default=CallKind.MARGIN_CALL.value,
        max_length=CODE_LEN,
        sa_column_kwargs={"server_default": CallKind.MARGIN_CALL.value},
    )


class PlanRow(LedgerTable, table=True):
    """A routing plan (DESIGN §5.3), version ``version`` of one margin call's plans.

    ``(margin_call_id, version)`` is unique: the first writer of a version wins, so two runs
    racing to plan one call cannot both record (and execute) a plan (``core.ledger.plans``).
    ``config_repr`` is the configuration that produced it (STYLE 25); ``detail`` the rest of
    the routing plan (method, problem fingerprint, notes, the call's shadow price ...).
    """

    __tablename__ = "plan"
    __table_args__ = (
        _check("status", PlanStatus),
        UniqueConstraint("margin_call_id", "version"),
    )

    id: str = Field(primary_key=True, max_length=NAME_LEN)
    margin_call_id: str | None = Field(
        default=None, max_length=NAME_LEN, foreign_key="margin_call.id", index=True
    )
    version: int  # 1, then one more per re-plan of the same call
    created_at: datetime = _at()
    policy: str = Field(max_length=CODE_LEN)
    solver: str = Field(max_length=32)  # "highs", or "greedy" when the fallback ran
    status: str = Field(max_length=CODE_LEN)
    deadline_s: float = Field(sa_type=Float)
    deficit_usd: Decimal = _money()
    credit_usd: Decimal = _money()
    cost_usd: Decimal = _money()
    uncovered_usd: Decimal = _money()
    solve_ms: float = Field(sa_type=Float)
    alternative_policy: str | None = Field(default=None, max_length=CODE_LEN)
    alternative_cost_usd: Decimal | None = _money(nullable=True)
    config_repr: str = Field(sa_type=Text)
    detail: dict[str, Any] | None = Field(default=None, sa_type=JsonPayload)


class PlanStepRow(LedgerTable, table=True):
    """One allocation of a plan, in execution order (ordered by ETA).

    ``asset`` / ``amount`` are what its first leg moves (a step without legs, a PnL offset
    credited in place, books its USD amount with asset ``USD``); ``to_venue_id`` /
    ``to_wallet`` where its last leg lands. The legs are rows of ``plan_leg``.
    """

    __tablename__ = "plan_step"
    __table_args__ = (
        UniqueConstraint("plan_id", "step_no"),
        _check("mode", TransferMode),
        _check("from_wallet", WalletKind),
        _check("to_wallet", WalletKind),
    )

    id: int | None = _id()
    plan_id: str = Field(max_length=NAME_LEN, foreign_key="plan.id", index=True)
    step_no: int
    source_id: str = Field(max_length=128)
    tier: int
    mode: str = Field(max_length=CODE_LEN)
    venue_id: str = _venue_fk()
    from_wallet: str | None = Field(default=None, max_length=CODE_LEN)
    to_venue_id: str | None = _venue_fk(nullable=True)
    to_wallet: str | None = Field(default=None, max_length=CODE_LEN)
    asset: str = Field(max_length=CODE_LEN)
    amount: Decimal = _money()
    amount_usd: Decimal = _money()
    credit_usd: Decimal = _money()
    cost_usd: Decimal = _money()
    eta_s: float = Field(sa_type=Float)
    # Null only on rows written before revision 0003.
    requests: int | None = None
    latency_s: float | None = Field(default=None, sa_type=Float)
    binding: str | None = Field(default=None, max_length=32)
    origin_pool: str | None = Field(default=None, max_length=NAME_LEN)


class PlanLegRow(LedgerTable, table=True):
    """One leg of a plan step: one venue operation, its asset amount and its idempotency key.

    ``idempotency_key`` is ``core.ledger.keys.leg_key(call, version, step_no, leg_no)``; the
    transfer row that executes the leg carries the same key.
    """

    __tablename__ = "plan_leg"
    __table_args__ = (
        UniqueConstraint("plan_id", "step_no", "leg_no"),
        ForeignKeyConstraint(["plan_id", "step_no"], ["plan_step.plan_id", "plan_step.step_no"]),
        _check("kind", LegKind),
        _check("from_wallet", WalletKind),
        _check("to_wallet", WalletKind),
    )

    id: int | None = _id()
    plan_id: str = Field(max_length=NAME_LEN, foreign_key="plan.id", index=True)
    step_no: int
    leg_no: int
    kind: str = Field(max_length=CODE_LEN)
    venue_id: str = _venue_fk()
    from_wallet: str = Field(max_length=CODE_LEN)
    to_venue_id: str = _venue_fk()  # == venue_id except for withdrawals
    to_wallet: str = Field(max_length=CODE_LEN)
    asset: str = Field(max_length=CODE_LEN)
    to_asset: str | None = Field(default=None, max_length=CODE_LEN)  # conversions only
    amount: Decimal = _money()  # in asset, a multiple of the venue's step
    amount_usd: Decimal = _money()  # amount × price_usd
    price_usd: Decimal = _money()
    route_id: str | None = Field(default=None, max_length=NAME_LEN)  # desk route or swap
    latency_s: float = Field(sa_type=Float)
    idempotency_key: str = Field(max_length=KEY_LEN, unique=True)


class TransferRow(LedgerTable, table=True):
    """A collateral movement: the intent (written ``pending`` before sending) and its result.

    One row per movement (one plan leg) rather than an intent table plus a result table: the
    UNIQUE idempotency key must guard the *movement*, and the executor's "look up before
    resend" reads one row. Every state change is also an audit event, which keeps the history.
    ``status`` holds the ledger's ``TransferState``. ``route_id`` names the desk route or swap
    (the rolling 24 h pre-authorisation is a sum over it); ``owner`` and ``lease_expires_at``
    say which executor holds the leg and until when, so a peer can tell a live holder from a
    crashed one.
    """

    __tablename__ = "transfer"
    __table_args__ = (
        _check("mode", TransferMode),
        _check("from_wallet", WalletKind),
        _check("to_wallet", WalletKind),
        _check("status", TransferState),
        # A planned transfer must point at a recorded step and leg; manual ones leave them null.
        ForeignKeyConstraint(["plan_id", "step_no"], ["plan_step.plan_id", "plan_step.step_no"]),
        ForeignKeyConstraint(
            ["plan_id", "step_no", "leg_no"],
            ["plan_leg.plan_id", "plan_leg.step_no", "plan_leg.leg_no"],
        ),
    )

    id: int | None = _id()
    idempotency_key: str = Field(max_length=KEY_LEN, unique=True)
    margin_call_id: str | None = Field(
        default=None, max_length=NAME_LEN, foreign_key="margin_call.id", index=True
    )
    plan_id: str | None = Field(
        default=None, max_length=NAME_LEN, foreign_key="plan.id", index=True
    )
    step_no: int | None = None
    source_id: str | None = Field(default=None, max_length=128)
    mode: str = Field(max_length=CODE_LEN)
    venue_id: str = _venue_fk()
    from_wallet: str = Field(max_length=CODE_LEN)
    to_venue_id: str = _venue_fk()  # == venue_id except for cross-venue withdrawals
    to_wallet: str = Field(max_length=CODE_LEN)
    asset: str = Field(max_length=CODE_LEN)
    amount: Decimal = _money()
    to_asset: str | None = Field(default=None, max_length=CODE_LEN)  # swaps only
    amount_usd: Decimal | None = _money(nullable=True)  # valued when planned
    status: str = Field(max_length=CODE_LEN, index=True)
    attempts: int = 0
    created_at: datetime = _at()
    sent_at: datetime | None = _at(nullable=True)
    finished_at: datetime | None = _at(nullable=True)
    latency_ms: float | None = Field(default=None, sa_type=Float)  # send -> venue answer
    venue_transfer_id: str | None = Field(default=None, max_length=128)
    error_kind: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, sa_type=Text)
    result: dict[str, Any] | None = Field(default=None, sa_type=JsonPayload)
    # Revision 0003: the leg this row executes and who is executing it.
    plan_version: int | None = None
    leg_no: int | None = None
    route_id: str | None = Field(default=None, max_length=NAME_LEN, index=True)
    owner: str | None = Field(default=None, max_length=NAME_LEN)  # executor holding the lease
    lease_expires_at: datetime | None = _at(nullable=True)


class AuditEventRow(LedgerTable, table=True):
    """One immutable event, hash-chained to its predecessor so tampering shows (DESIGN §7).

    ``hash = HMAC-SHA256(key, canonical(seq, event_id, kind, ts_event, ts_init, refs, payload,
    prev_hash))``, or plain SHA-256 of the same bytes on rows written without a key
    (``hash_scheme``; see ``core.ledger.chain``). No foreign keys: the trail must stand alone,
    and it records events (a refused leg, say) whose subject never got a row of its own.
    """

    __tablename__ = "audit_event"
    __table_args__ = (_check("hash_scheme", HashScheme),)

    seq: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    event_id: str = Field(max_length=NAME_LEN, unique=True)
    kind: str = Field(max_length=64, index=True)
    ts_event: int = Field(sa_type=BigInteger)  # ns since epoch, when it happened
    ts_init: int = Field(sa_type=BigInteger)  # ns since epoch, when we recorded it
    margin_call_id: str | None = Field(default=None, max_length=NAME_LEN, index=True)
    plan_id: str | None = Field(default=None, max_length=NAME_LEN)
    transfer_key: str | None = Field(default=None, max_length=KEY_LEN)
    payload: dict[str, Any] = Field(sa_type=JsonPayload)
    prev_hash: str = Field(max_length=HASH_LEN)
    hash: str = Field(max_length=HASH_LEN, unique=True)
    # Revision 0003; rows written before it are plain SHA-256 (the server default).
    hash_scheme: str = Field(
        default=HashScheme.SHA256.value,
        max_length=CODE_LEN,
        sa_column_kwargs={"server_default": HashScheme.SHA256.value},
    )


class AuditAnchorRow(LedgerTable, table=True):
    """The audit chain's head ``(seq, hash)`` as it was at ``anchored_at``, kept off the chain.

    A deleted tail leaves a consistent chain; an anchor past the new head shows it
    (``core.ledger.anchors``). ``mac`` is the HMAC of the anchor under the audit key, so a
    forger who rewrites the chain cannot rewrite its anchors to match; null when recorded
    without a key. Operators also keep the printed head outside the database.
    """

    __tablename__ = "audit_anchor"

    id: int | None = _id()
    seq: int = Field(sa_type=BigInteger, index=True)
    hash: str = Field(max_length=HASH_LEN)
    anchored_at: datetime = _at()
    recorded_by: str = Field(max_length=NAME_LEN)  # "reconcile", "pmr audit anchor", ...
    mac: str | None = Field(default=None, max_length=HASH_LEN)


class ReconDriftRow(LedgerTable, table=True):
    """A difference between what the ledger expected and what a venue reported."""

    __tablename__ = "recon_drift"
    __table_args__ = (
        _check("wallet", WalletKind),
        _check("status", DriftStatus),
    )

    id: int | None = _id()
    detected_at: datetime = _at(index=True)
    venue_id: str = _venue_fk()
    wallet: str = Field(max_length=CODE_LEN)
    asset: str = Field(max_length=CODE_LEN)
    expected: Decimal = _money()
    reported: Decimal = _money()
    drift: Decimal = _money()  # reported - expected, in asset
    drift_usd: Decimal | None = _money(nullable=True)
    tolerance: Decimal = _money()
    expected_snapshot_id: int | None = Field(
        default=None, foreign_key="snapshot.id", sa_type=BigInteger, nullable=True
    )
    reported_snapshot_id: int | None = Field(
        default=None, foreign_key="snapshot.id", sa_type=BigInteger, nullable=True
    )
    status: str = Field(max_length=CODE_LEN)
    resolved_at: datetime | None = _at(nullable=True)
    note: str | None = Field(default=None, sa_type=Text)


class RateWeightRow(LedgerTable, table=True):
    """One write's request weight, spent on a venue's API family at ``ts_ns`` (revision 0005).

    The cross-process half of the rate limiter (``core.execution.ratelimits``): every executor
    process adds its sends here under a lock and sums the rows inside the sliding window before
    sending, so the processes together never exceed the venue's weight per window. Times are
    integer nanoseconds on the desk's clock; rows older than the window are pruned.
    """

    __tablename__ = "rate_weight"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    id: int | None = _id()
    venue_id: str = Field(max_length=NAME_LEN)
    family: str = Field(max_length=CODE_LEN)
    ts_ns: int = Field(sa_type=BigInteger, index=True)
    weight: int
    owner: str | None = Field(default=None, max_length=NAME_LEN)


class VenueBanRow(LedgerTable, table=True):
    """A venue that banned us (HTTP 418) until ``banned_until_ns``: honoured by every process
    before it sends anything to that venue (revision 0005)."""

    __tablename__ = "venue_ban"

    venue_id: str = Field(primary_key=True, max_length=NAME_LEN)
    banned_until_ns: int = Field(sa_type=BigInteger)
    family: str | None = Field(default=None, max_length=CODE_LEN)
    reason: str | None = Field(default=None, sa_type=Text)
