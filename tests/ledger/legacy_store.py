"""A store as the previous release (commit 77b45ba, no migrations) left it, full of rows.

The DDL is that release's own: ``fixtures/release_77b45ba/schema.postgresql.sql`` is its
``sql/schema.sql`` (``git show 77b45ba:sql/schema.sql``), ``views.postgresql.sql`` its
``sql/views.sql`` (its ``pmr db init`` created those views on PostgreSQL), and
``schema.sqlite.sql`` is what its ``LedgerTable.metadata.create_all`` wrote into ``sqlite_master``. Rows go in through the
baseline revision's frozen tables (the same column types that release wrote with), one or more
in every table, the audit trail a chain whose hashes that release's ``core.ledger.chain``
computed (pasted below as literals, so the test proves an old chain still verifies).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, literal_column, select

from core.ledger.migrations.status import baseline_metadata

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "release_77b45ba"
T0 = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)
KEY = "5d41402abc4b2a76b9719d911017c592"
GENESIS = "0" * 64
HASH_1 = "0d851860853e75ad9a00fd8a6cd57adaa479b95c064cafe58769924526bf789c"
HASH_2 = "da2aeb5873c995fd0097c23fbfc812f4d3439b07447f2e8ec4ab55cad9d39679"
HASH_3 = "d5407eaad85cc65247a03e224442f7218162d817772b4072960f9400889f0b08"
PRIMARY_KEY = {"audit_event": "seq"}  # every other table's key is ``id``
#: Columns later revisions renamed, (table, old name) -> name at head: the row must keep its
#: value under the new name (0002: ``margin_report.band`` was always the venue's band).
RENAMED_AT_HEAD = {("margin_report", "band"): "venue_band"}

_CALL_REFS = {"margin_call_id": "call-1", "plan_id": None, "transfer_key": None}
_STEP_REFS = {"margin_call_id": "call-1", "plan_id": "plan-1", "transfer_key": KEY}

#: Rows per table, in insertion (foreign-key) order. Values are what the application books.
ROWS: dict[str, list[dict[str, Any]]] = {
    "venue": [
        {"id": "binance-main", "exchange": "binance", "mode": "live", "created_at": T0},
        {"id": "sim-a", "exchange": "sim", "mode": "sim", "created_at": T0},
    ],
    "wallet": [
        {"id": 1, "venue_id": "sim-a", "account": "main", "kind": "spot", "pool_id": None},
        {"id": 2, "venue_id": "sim-a", "account": "main", "kind": "pm", "pool_id": "sim-a.pm"},
    ],
    "snapshot": [
        {"id": 1, "taken_at": T0, "source": "venue", "venue_id": "sim-a"},
        {"id": 2, "taken_at": T0 + timedelta(minutes=1), "source": "expected", "venue_id": None},
    ],
    "balance_snapshot": [
        {"id": 1, "snapshot_id": 1, "venue_id": "sim-a", "wallet": "pm", "asset": "USDT",
         "amount": Decimal("1250.5"), "loan": Decimal("0"),
         "interest": Decimal("0.000000000000000001")},
        {"id": 2, "snapshot_id": 1, "venue_id": "sim-a", "wallet": "spot", "asset": "ETH",
         "amount": Decimal("12345678901234567.123456789012345678"), "loan": Decimal("2"),
         "interest": Decimal("0.5")},
    ],
    "position_snapshot": [
        {"id": 1, "snapshot_id": 1, "venue_id": "sim-a", "wallet": "options",
         "symbol": "BTC-27MAR26-90000-C", "instrument_kind": "option", "underlying": "BTC",
         "quote": "USDT", "contract_size": Decimal("0.01"),
         "expiry_at": datetime(2026, 3, 27, 8, 0, tzinfo=UTC), "strike": Decimal("90000"),
         "option_right": "call", "settlement": "linear", "qty": Decimal("-3.5"),
         "entry_price": Decimal("1234.56")},
        {"id": 2, "snapshot_id": 1, "venue_id": "sim-a", "wallet": "um", "symbol": "BTCUSDT",
         "instrument_kind": "linear_perp", "underlying": "BTC", "quote": "USDT",
         "contract_size": Decimal("1"), "expiry_at": None, "strike": None, "option_right": None,
         "settlement": None, "qty": Decimal("2.5"), "entry_price": Decimal("60000.1")},
    ],
    "price_snapshot": [
        {"id": 1, "snapshot_id": 1, "symbol": "BTC-27MAR26-90000-C", "mark": Decimal("1500.25"),
         "index_price": Decimal("87000.1"), "iv": Decimal("0.55"), "priced_at": T0},
        {"id": 2, "snapshot_id": 1, "symbol": "BTCUSDT", "mark": Decimal("87010"),
         "index_price": None, "iv": None, "priced_at": T0},
    ],
    "margin_report": [
        {"id": 1, "pool_id": "sim-a.pm", "venue_id": "sim-a", "snapshot_id": 1,
         "model": "unified", "computed_at": T0, "margin_currency": "USDT",
         "equity": Decimal("540000"), "adjusted_equity": Decimal("520000.5"),
         "initial_margin": Decimal("600000"), "maint_margin": Decimal("481481.48"),
         "ratio": Decimal("1.08"), "band": "call", "target_ratio": Decimal("1.25"),
         "deficit_to_target": Decimal("81851.85"), "equity_usd": Decimal("540000"),
         "maint_margin_usd": Decimal("481481.48"), "deficit_usd": Decimal("81851.85"),
         "standard_maint_margin": Decimal("700000"), "capital_efficiency": Decimal("1.4538"),
         "worst_scenario": "BTC -30%, vol +50%",
         "detail": {"scenarios": 33, "worst_pnl_usd": "-151234.5", "notes": ["tail", "é"]}},
    ],
    "stress_result": [
        {"id": 1, "run_id": "run-1", "scenario": "BTC -30%", "scenario_kind": "grid",
         "pool_id": "sim-a.pm", "venue_id": "sim-a", "computed_at": T0,
         "ratio_after": Decimal("0.91"), "band_after": "liquidation",
         "deficit_usd": Decimal("150000"), "covered_10s_usd": Decimal("40000"),
         "covered_60s_usd": Decimal("90000"), "covered_600s_usd": Decimal("150000"),
         "uncovered_usd": Decimal("0"), "detail": None},
    ],
    "margin_call": [
        {"id": "call-1", "pool_id": "sim-a.pm", "venue_id": "sim-a", "margin_report_id": 1,
         "status": "open", "raised_at": T0, "closed_at": None, "ratio_at_raise": Decimal("1.08"),
         "target_ratio": Decimal("1.25"), "deficit_usd": Decimal("50000"), "note": "breach"},
    ],
    "plan": [
        {"id": "plan-1", "margin_call_id": "call-1", "created_at": T0, "policy": "strict",
         "solver": "highs", "status": "optimal", "deadline_s": 60.0,
         "deficit_usd": Decimal("50000"), "credit_usd": Decimal("50000"),
         "cost_usd": Decimal("1.25"), "uncovered_usd": Decimal("0"), "solve_ms": 12.5,
         "alternative_policy": "cost", "alternative_cost_usd": Decimal("0.75"),
         "config_repr": "StrictPolicy(tiers=(1, 2, 3))"},
    ],
    "plan_step": [
        {"id": 1, "plan_id": "plan-1", "step_no": 0, "source_id": "sim-a:spot:USDT", "tier": 3,
         "mode": "transfer", "venue_id": "sim-a", "from_wallet": "spot", "to_venue_id": None,
         "to_wallet": "pm", "asset": "USDT", "amount": Decimal("50000"),
         "amount_usd": Decimal("50000"), "credit_usd": Decimal("50000"),
         "cost_usd": Decimal("1.25"), "eta_s": 0.15},
    ],
    "transfer": [
        {"id": 1, "idempotency_key": KEY, "margin_call_id": "call-1", "plan_id": "plan-1",
         "step_no": 0, "source_id": "sim-a:spot:USDT", "mode": "transfer", "venue_id": "sim-a",
         "from_wallet": "spot", "to_venue_id": "sim-a", "to_wallet": "pm", "asset": "USDT",
         "amount": Decimal("50000"), "to_asset": None, "amount_usd": Decimal("50000"),
         "status": "confirmed", "attempts": 1, "created_at": T0,
         "sent_at": T0 + timedelta(seconds=1),
         "finished_at": T0 + timedelta(seconds=1, milliseconds=150), "latency_ms": 150.0,
         "venue_transfer_id": "sim-tx-0001", "error_kind": None, "error_message": None,
         "result": {"tranId": 1001, "status": "CONFIRMED", "amount": "50000"}},
    ],
    "audit_event": [
        {"seq": 1, "event_id": "evt-call-raised", "kind": "MarginCallRaised",
         "ts_event": 1773307800000000000, "ts_init": 1773307800000001000, **_CALL_REFS,
         "payload": {"pool_id": "sim-a.pm", "deficit_usd": "50000", "ratio": "1.08"},
         "prev_hash": GENESIS, "hash": HASH_1},
        {"seq": 2, "event_id": "evt-transfer-requested", "kind": "TransferRequested",
         "ts_event": 1773307801000000000, "ts_init": 1773307801000002000, **_STEP_REFS,
         "payload": {"amount": "50000", "asset": "USDT", "from_wallet": "spot",
                     "to_wallet": "pm", "step_no": 0},
         "prev_hash": HASH_1, "hash": HASH_2},
        {"seq": 3, "event_id": "evt-transfer-confirmed", "kind": "TransferConfirmed",
         "ts_event": 1773307801150000000, "ts_init": 1773307801150003000, **_STEP_REFS,
         "payload": {"latency_ms": 150, "venue_transfer_id": "sim-tx-0001",
                     "note": "délai normal"},
         "prev_hash": HASH_2, "hash": HASH_3},
    ],
    "recon_drift": [
        {"id": 1, "detected_at": T0 + timedelta(minutes=2), "venue_id": "sim-a", "wallet": "pm",
         "asset": "USDT", "expected": Decimal("1250.5"), "reported": Decimal("1250.4"),
         "drift": Decimal("-0.1"), "drift_usd": Decimal("-0.1"), "tolerance": Decimal("0.01"),
         "expected_snapshot_id": 2, "reported_snapshot_id": 1, "status": "open",
         "resolved_at": None, "note": None},
    ],
}  # fmt: skip


def legacy_ddl(backend: str) -> str:
    """The previous release's DDL for ``backend`` (``sqlite`` or ``postgresql``)."""
    return (FIXTURES / f"schema.{backend}.sql").read_text(encoding="utf-8")


def build_legacy_store(engine: Engine) -> None:
    """Create the previous release's tables behind ``engine`` and insert ``ROWS``."""
    ddl = legacy_ddl(engine.dialect.name)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.connection.dbapi_connection.executescript(ddl)  # type: ignore[union-attr]
        else:
            conn.exec_driver_sql(ddl)
            views = (FIXTURES / "views.postgresql.sql").read_text(encoding="utf-8")
            conn.exec_driver_sql(views)
        tables = baseline_metadata().tables
        for name, rows in ROWS.items():
            conn.execute(insert(tables[name]), rows)


def typed_rows(conn: Connection, table: str, *, at_head: bool = False) -> list[dict[str, Any]]:
    """Read ``table``'s baseline columns through the baseline's column types, ordered by primary
    key; ``at_head`` reads a renamed column under its new name (keyed by the old one)."""
    t = baseline_metadata().tables[table]
    key = t.c[PRIMARY_KEY.get(table, "id")]
    if not at_head:
        return [dict(r._mapping) for r in conn.execute(select(t).order_by(key))]
    cols = [
        literal_column(f'"{RENAMED_AT_HEAD[(table, c.name)]}"', c.type).label(c.name)
        if (table, c.name) in RENAMED_AT_HEAD
        else c
        for c in t.c
    ]
    return [dict(r._mapping) for r in conn.execute(select(*cols).select_from(t).order_by(key))]


def raw_rows(
    conn: Connection, table: str, columns: list[str], *, at_head: bool = False
) -> list[tuple[Any, ...]]:
    """Read ``columns`` of ``table`` as the driver returns them (no type processing);
    ``at_head`` reads a renamed column under its new name."""
    if at_head:
        columns = [RENAMED_AT_HEAD.get((table, c), c) for c in columns]
    quoted = ", ".join(f'"{c}"' for c in columns)
    key = PRIMARY_KEY.get(table, "id")
    return [
        tuple(r) for r in conn.exec_driver_sql(f'SELECT {quoted} FROM "{table}" ORDER BY "{key}"')
    ]
