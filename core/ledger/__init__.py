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
from core.ledger.keys import leg_key, new_margin_call_id, plan_id
from core.ledger.plans import (
    RecordedPlan,
    latest_plan_version,
    load_plan,
    open_margin_call,
    record_alternative,
    record_margin_call,
    record_plan,
)
from core.ledger.preauth_usage import PreauthUsage, preauth_usage
from core.ledger.queries import NamedQuery, load_queries, parse_named_queries, run_query
from core.ledger.store import (
    InitReport,
    Snapshot,
    database_url,
    ensure_venue,
    init_db,
    latest_snapshot_id,
    load_snapshot,
    make_engine,
    record_snapshot,
    redact_url,
    session_scope,
)
from core.ledger.transfers import (
    TransferIntent,
    acquire_leg_lease,
    get_transfer,
    intent_for_leg,
    preauth_used_usd,
    record_refused_leg,
    record_transfer_intent,
    record_transfer_result,
    release_leg_lease,
    transfers_in_state,
)
from core.ledger.vocab import (
    CallStatus,
    DriftStatus,
    PlanStatus,
    SnapshotSource,
    TransferMode,
    TransferState,
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
    "PreauthUsage",
    "RecordedPlan",
    "Snapshot",
    "SnapshotSource",
    "TransferIntent",
    "TransferMode",
    "TransferState",
    "VenueMode",
    "acquire_leg_lease",
    "append_audit_event",
    "audit_head",
    "database_url",
    "ensure_venue",
    "get_transfer",
    "init_db",
    "intent_for_leg",
    "iter_audit_events",
    "latest_plan_version",
    "latest_snapshot_id",
    "leg_key",
    "load_plan",
    "load_queries",
    "load_snapshot",
    "make_engine",
    "new_margin_call_id",
    "open_margin_call",
    "parse_named_queries",
    "plan_id",
    "preauth_usage",
    "preauth_used_usd",
    "record_alternative",
    "record_margin_call",
    "record_plan",
    "record_refused_leg",
    "record_snapshot",
    "record_transfer_intent",
    "record_transfer_result",
    "redact_url",
    "release_leg_lease",
    "run_query",
    "session_scope",
    "transfers_in_state",
    "verify_audit_chain",
    "verify_chain",
]
