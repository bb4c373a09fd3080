"""The store: sqlmodel tables, mappers, repository functions, the audit chain (DESIGN §8).

Public entry points are re-exported here; see ``core.ledger.store`` for where data lives.
"""

from core.ledger.audit_log import (
    append_audit_event,
    audit_head,
    iter_audit_events,
    verify_audit_chain,
)
from core.ledger.chain import GENESIS_HASH, ChainVerdict, verify_chain
from core.ledger.queries import NamedQuery, load_queries, parse_named_queries, run_query
from core.ledger.store import (
    InitReport,
    Snapshot,
    database_url,
    ensure_venue,
    get_plan,
    init_db,
    latest_snapshot_id,
    load_snapshot,
    make_engine,
    record_margin_call,
    record_plan,
    record_snapshot,
    redact_url,
    session_scope,
)
from core.ledger.transfers import (
    TransferIntent,
    get_transfer,
    record_transfer_intent,
    record_transfer_result,
    transfer_key,
    transfers_in_status,
)
from core.ledger.vocab import (
    CallStatus,
    DriftStatus,
    PlanStatus,
    SnapshotSource,
    TransferMode,
    TransferStatus,
    VenueMode,
)

__all__ = [
    "GENESIS_HASH",
    "CallStatus",
    "ChainVerdict",
    "DriftStatus",
    "InitReport",
    "NamedQuery",
    "PlanStatus",
    "Snapshot",
    "SnapshotSource",
    "TransferIntent",
    "TransferMode",
    "TransferStatus",
    "VenueMode",
    "append_audit_event",
    "audit_head",
    "database_url",
    "ensure_venue",
    "get_plan",
    "get_transfer",
    "init_db",
    "iter_audit_events",
    "latest_snapshot_id",
    "load_queries",
    "load_snapshot",
    "make_engine",
    "parse_named_queries",
    "record_margin_call",
    "record_plan",
    "record_snapshot",
    "record_transfer_intent",
    "record_transfer_result",
    "redact_url",
    "run_query",
    "session_scope",
    "transfer_key",
    "transfers_in_status",
    "verify_audit_chain",
    "verify_chain",
]
