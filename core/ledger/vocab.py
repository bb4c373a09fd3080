"""The closed vocabularies the store writes: statuses, modes, bands, kinds.

Why a module of its own: the execution layer (DESIGN §7), the flows and the SQL views all speak
these words, and the database holds them as short strings guarded by ``CHECK`` constraints built
from these enums (``core.ledger.tables``). One list, read by both the Python code and the DDL,
means a new status cannot reach the database without the constraint knowing it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "TRANSFER_TRANSITIONS",
    "CallKind",
    "CallStatus",
    "DriftStatus",
    "PlanStatus",
    "SnapshotSource",
    "TransferMode",
    "TransferState",
    "VenueMode",
    "sql_in_list",
]


class TransferState(StrEnum):
    """Life of a transfer row in the ledger (DESIGN §7): what *we* know of one leg.

    Not the venue's word for it: a venue reports a ``VenueTransferStatus``
    (``core.venues.reports``: pending / confirmed / failed / not found yet / not found /
    ambiguous), and ``core.execution.states`` maps that report onto these states, once, for
    every caller.

    ``pending`` is written *before* the request leaves, so a crash between send and record
    leaves a row that the executor must look up by its idempotency key before any resend.
    ``sent`` means the venue accepted the request and has not credited it yet.
    ``unknown`` means the request left and no answer came back (``OutcomeUnknown``), or the
    venue's records cannot say which transfer is ours: look it up, never resend.
    ``refused`` means a gate (the pre-authorisation allow-list, a cap) denied the leg: it is
    recorded, and never sent.
    """

    PENDING = "pending"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REFUSED = "refused"

    @property
    def is_final(self) -> bool:
        """Whether no later report may change this state."""
        return self in _FINAL_STATES

    @property
    def may_have_moved(self) -> bool:
        """Whether collateral may have left (or may still leave) the origin under this state.

        Everything but ``failed`` and ``refused``: what counts against a rolling
        pre-authorisation cap, and what must be looked up before anything is resent.
        """
        return self not in {TransferState.FAILED, TransferState.REFUSED}


_FINAL_STATES = frozenset({TransferState.CONFIRMED, TransferState.FAILED, TransferState.REFUSED})

#: Allowed state moves. ``unknown`` can become ``sent`` when the lookup finds the transfer
#: accepted but not yet settled; ``refused`` is reachable only from ``pending`` (a gate that
#: re-checks under the intent row) and, like every final state, never changes. A leg a gate
#: denies before its intent row exists is written ``refused`` directly
#: (``core.ledger.transfers.record_refused_leg``).
TRANSFER_TRANSITIONS: dict[TransferState, frozenset[TransferState]] = {
    TransferState.PENDING: frozenset(
        {
            TransferState.SENT,
            TransferState.CONFIRMED,
            TransferState.FAILED,
            TransferState.UNKNOWN,
            TransferState.REFUSED,
        }
    ),
    TransferState.SENT: frozenset(
        {TransferState.CONFIRMED, TransferState.FAILED, TransferState.UNKNOWN}
    ),
    TransferState.UNKNOWN: frozenset(
        {TransferState.SENT, TransferState.CONFIRMED, TransferState.FAILED}
    ),
    TransferState.CONFIRMED: frozenset(),
    TransferState.FAILED: frozenset(),
    TransferState.REFUSED: frozenset(),
}


class TransferMode(StrEnum):
    """How a plan step moves credit into the pool (DESIGN §5.1 tiers, §7 tags)."""

    PNL_OFFSET = "pnl_offset"  # tier 1: unrealised PnL already inside the pool
    IN_PLACE = "in_place"  # tier 2: collateral already in the right product
    TRANSFER = "transfer"  # tier 3: internal / sub-account transfer
    SWAP = "swap"  # tier 3: conversion into an asset with a better collateral rate
    WITHDRAWAL = "withdrawal"  # tier 3: cross-venue on-chain move


class PlanStatus(StrEnum):
    """Solver outcome of a routing plan (DESIGN §5.3)."""

    OPTIMAL = "optimal"
    PARTIAL = "partial"
    INFEASIBLE = "infeasible"


class CallKind(StrEnum):
    """What a ``margin_call`` row stands for: the unit that plans, legs and audit events hang on.

    ``margin_call``: a pool fell below its call level; the executor re-plans what fails and
    verifies the pool's ratio at the end. ``prefund``: a pre-funding run (``pmr prefund
    --apply``) moving collateral into pools *before* a shock; it has no ratio to restore, so it
    is never re-planned or verified, only closed once every leg is final
    (``core.execution.prefund``).
    """

    MARGIN_CALL = "margin_call"
    PREFUND = "prefund"


class CallStatus(StrEnum):
    """Life of a margin call (DESIGN §9), or of a pre-funding run.

    A margin call ends ``cured`` (ratio restored) or ``escalated``; a pre-funding ends
    ``applied`` (every move confirmed) or ``partial`` (every leg final, some refused or
    failed: the legs say which).
    """

    OPEN = "open"
    CURED = "cured"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"
    APPLIED = "applied"
    PARTIAL = "partial"


class DriftStatus(StrEnum):
    """Life of a reconciliation drift (DESIGN §9 ``reconcile``)."""

    OPEN = "open"
    EXPLAINED = "explained"
    RESOLVED = "resolved"


class VenueMode(StrEnum):
    """Whether a venue row is a live exchange connection or the simulator."""

    LIVE = "live"
    SIM = "sim"


class SnapshotSource(StrEnum):
    """Who produced a snapshot: a venue read, or the ledger's own expectation."""

    VENUE = "venue"
    EXPECTED = "expected"
    CONFIG = "config"


def sql_in_list(column: str, values: type[StrEnum]) -> str:
    """Render ``column IN ('a', 'b', ...)`` for a CHECK constraint, in enum order.

    Examples
    --------
    >>> sql_in_list("status", PlanStatus)
    "status IN ('optimal', 'partial', 'infeasible')"
    """
    quoted = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({quoted})"
