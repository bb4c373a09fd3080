"""Baseline: the store exactly as the previous release (commit 77b45ba) created it.

That release had no migrations: ``pmr db init`` ran ``LedgerTable.metadata.create_all``. This
revision freezes those 14 tables (columns, types, constraint and index names, CHECK lists
spelled out) so it never moves when ``core/ledger/tables.py`` does, and creates them the way
that release did. ``core.ledger.migrations.status`` compares an unstamped store with
``METADATA`` to recognise a store of that release before stamping it ``0001``.

Column types come from ``core.ledger.coltypes`` (``NUMERIC(38, 18)`` / exact text on SQLite,
``TIMESTAMP WITH TIME ZONE``, ``JSONB``); migrations may import those types, never the models.

Revision ID: 0001
Revises:
Create Date: 2026-03-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.ledger import coltypes

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The previous release's schema. Every name is explicit, so no naming convention is needed.
METADATA = sa.MetaData()

# SQLite auto-assigns keys only to a column declared exactly INTEGER PRIMARY KEY.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

sa.Table(
    "venue",
    METADATA,
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("exchange", sa.String(32), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("created_at", coltypes.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_venue"),
    sa.CheckConstraint("mode IN ('live', 'sim')", name="ck_venue_mode"),
)
sa.Table(
    "wallet",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("pool_id", sa.String(64), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_wallet"),
    sa.UniqueConstraint("venue_id", "account", "kind", name="uq_wallet_venue_id_account_kind"),
    sa.CheckConstraint(
        "kind IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')", name="ck_wallet_kind"
    ),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_wallet_venue_id_venue"),
)
sa.Table(
    "snapshot",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("taken_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_snapshot"),
    sa.CheckConstraint("source IN ('venue', 'expected', 'config')", name="ck_snapshot_source"),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_snapshot_venue_id_venue"),
    sa.Index("ix_snapshot_taken_at", "taken_at"),
)
sa.Table(
    "balance_snapshot",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("snapshot_id", sa.BigInteger(), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("wallet", sa.String(16), nullable=False),
    sa.Column("asset", sa.String(16), nullable=False),
    sa.Column("amount", coltypes.Money(), nullable=False),
    sa.Column("loan", coltypes.Money(), nullable=False),
    sa.Column("interest", coltypes.Money(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_balance_snapshot"),
    sa.UniqueConstraint(
        "snapshot_id",
        "venue_id",
        "wallet",
        "asset",
        name="uq_balance_snapshot_snapshot_id_venue_id_wallet_asset",
    ),
    sa.CheckConstraint(
        "wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_balance_snapshot_wallet",
    ),
    sa.ForeignKeyConstraint(
        ["snapshot_id"], ["snapshot.id"], name="fk_balance_snapshot_snapshot_id_snapshot"
    ),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_balance_snapshot_venue_id_venue"),
    sa.Index("ix_balance_snapshot_snapshot_id", "snapshot_id"),
)
sa.Table(
    "position_snapshot",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("snapshot_id", sa.BigInteger(), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("wallet", sa.String(16), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("instrument_kind", sa.String(16), nullable=False),
    sa.Column("underlying", sa.String(16), nullable=False),
    sa.Column("quote", sa.String(16), nullable=False),
    sa.Column("contract_size", coltypes.Money(), nullable=False),
    sa.Column("expiry_at", coltypes.UtcDateTime(), nullable=True),
    sa.Column("strike", coltypes.Money(), nullable=True),
    sa.Column("option_right", sa.String(16), nullable=True),
    sa.Column("settlement", sa.String(16), nullable=True),
    sa.Column("qty", coltypes.Money(), nullable=False),
    sa.Column("entry_price", coltypes.Money(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_position_snapshot"),
    sa.UniqueConstraint(
        "snapshot_id",
        "venue_id",
        "wallet",
        "symbol",
        name="uq_position_snapshot_snapshot_id_venue_id_wallet_symbol",
    ),
    sa.CheckConstraint(
        "wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_position_snapshot_wallet",
    ),
    sa.CheckConstraint(
        "instrument_kind IN ('spot', 'linear_perp', 'linear_future', 'inverse_perp', 'inverse_future', 'option')",
        name="ck_position_snapshot_instrument_kind",
    ),
    sa.CheckConstraint("option_right IN ('call', 'put')", name="ck_position_snapshot_option_right"),
    sa.CheckConstraint(
        "settlement IN ('linear', 'inverse')", name="ck_position_snapshot_settlement"
    ),
    sa.ForeignKeyConstraint(
        ["snapshot_id"], ["snapshot.id"], name="fk_position_snapshot_snapshot_id_snapshot"
    ),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_position_snapshot_venue_id_venue"),
    sa.Index("ix_position_snapshot_snapshot_id", "snapshot_id"),
)
sa.Table(
    "price_snapshot",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("snapshot_id", sa.BigInteger(), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("mark", coltypes.Money(), nullable=False),
    sa.Column("index_price", coltypes.Money(), nullable=True),
    sa.Column("iv", coltypes.Money(), nullable=True),
    sa.Column("priced_at", coltypes.UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_price_snapshot"),
    sa.UniqueConstraint("snapshot_id", "symbol", name="uq_price_snapshot_snapshot_id_symbol"),
    sa.ForeignKeyConstraint(
        ["snapshot_id"], ["snapshot.id"], name="fk_price_snapshot_snapshot_id_snapshot"
    ),
    sa.Index("ix_price_snapshot_snapshot_id", "snapshot_id"),
)
sa.Table(
    "margin_report",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("pool_id", sa.String(64), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("snapshot_id", sa.BigInteger(), nullable=True),
    sa.Column("model", sa.String(16), nullable=False),
    sa.Column("computed_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("margin_currency", sa.String(16), nullable=False),
    sa.Column("equity", coltypes.Money(), nullable=False),
    sa.Column("adjusted_equity", coltypes.Money(), nullable=False),
    sa.Column("initial_margin", coltypes.Money(), nullable=False),
    sa.Column("maint_margin", coltypes.Money(), nullable=False),
    sa.Column("ratio", coltypes.Money(), nullable=True),
    sa.Column("band", sa.String(16), nullable=False),
    sa.Column("target_ratio", coltypes.Money(), nullable=False),
    sa.Column("deficit_to_target", coltypes.Money(), nullable=False),
    sa.Column("equity_usd", coltypes.Money(), nullable=False),
    sa.Column("maint_margin_usd", coltypes.Money(), nullable=False),
    sa.Column("deficit_usd", coltypes.Money(), nullable=False),
    sa.Column("standard_maint_margin", coltypes.Money(), nullable=True),
    sa.Column("capital_efficiency", coltypes.Money(), nullable=True),
    sa.Column("worst_scenario", sa.String(128), nullable=True),
    sa.Column("detail", coltypes.JsonPayload(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_margin_report"),
    sa.CheckConstraint(
        "model IN ('unified', 'scenario', 'standard')", name="ck_margin_report_model"
    ),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_margin_report_venue_id_venue"),
    sa.ForeignKeyConstraint(
        ["snapshot_id"], ["snapshot.id"], name="fk_margin_report_snapshot_id_snapshot"
    ),
    sa.Index("ix_margin_report_computed_at", "computed_at"),
    sa.Index("ix_margin_report_pool_id", "pool_id"),
)
sa.Table(
    "stress_result",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("scenario", sa.String(128), nullable=False),
    sa.Column("scenario_kind", sa.String(32), nullable=False),
    sa.Column("pool_id", sa.String(64), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("computed_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("ratio_after", coltypes.Money(), nullable=True),
    sa.Column("band_after", sa.String(16), nullable=False),
    sa.Column("deficit_usd", coltypes.Money(), nullable=False),
    sa.Column("covered_10s_usd", coltypes.Money(), nullable=False),
    sa.Column("covered_60s_usd", coltypes.Money(), nullable=False),
    sa.Column("covered_600s_usd", coltypes.Money(), nullable=False),
    sa.Column("uncovered_usd", coltypes.Money(), nullable=False),
    sa.Column("detail", coltypes.JsonPayload(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_stress_result"),
    sa.UniqueConstraint(
        "run_id", "scenario", "pool_id", name="uq_stress_result_run_id_scenario_pool_id"
    ),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_stress_result_venue_id_venue"),
    sa.Index("ix_stress_result_run_id", "run_id"),
)
sa.Table(
    "margin_call",
    METADATA,
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("pool_id", sa.String(64), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("margin_report_id", sa.BigInteger(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("raised_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("closed_at", coltypes.UtcDateTime(), nullable=True),
    sa.Column("ratio_at_raise", coltypes.Money(), nullable=True),
    sa.Column("target_ratio", coltypes.Money(), nullable=False),
    sa.Column("deficit_usd", coltypes.Money(), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_margin_call"),
    sa.CheckConstraint(
        "status IN ('open', 'cured', 'escalated', 'cancelled')", name="ck_margin_call_status"
    ),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_margin_call_venue_id_venue"),
    sa.ForeignKeyConstraint(
        ["margin_report_id"],
        ["margin_report.id"],
        name="fk_margin_call_margin_report_id_margin_report",
    ),
    sa.Index("ix_margin_call_pool_id", "pool_id"),
)
sa.Table(
    "plan",
    METADATA,
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("margin_call_id", sa.String(64), nullable=True),
    sa.Column("created_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("policy", sa.String(16), nullable=False),
    sa.Column("solver", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("deadline_s", sa.Float(), nullable=False),
    sa.Column("deficit_usd", coltypes.Money(), nullable=False),
    sa.Column("credit_usd", coltypes.Money(), nullable=False),
    sa.Column("cost_usd", coltypes.Money(), nullable=False),
    sa.Column("uncovered_usd", coltypes.Money(), nullable=False),
    sa.Column("solve_ms", sa.Float(), nullable=False),
    sa.Column("alternative_policy", sa.String(16), nullable=True),
    sa.Column("alternative_cost_usd", coltypes.Money(), nullable=True),
    sa.Column("config_repr", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_plan"),
    sa.CheckConstraint("status IN ('optimal', 'partial', 'infeasible')", name="ck_plan_status"),
    sa.ForeignKeyConstraint(
        ["margin_call_id"], ["margin_call.id"], name="fk_plan_margin_call_id_margin_call"
    ),
    sa.Index("ix_plan_margin_call_id", "margin_call_id"),
)
sa.Table(
    "plan_step",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("plan_id", sa.String(64), nullable=False),
    sa.Column("step_no", sa.Integer(), nullable=False),
    sa.Column("source_id", sa.String(128), nullable=False),
    sa.Column("tier", sa.Integer(), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("from_wallet", sa.String(16), nullable=True),
    sa.Column("to_venue_id", sa.String(64), nullable=True),
    sa.Column("to_wallet", sa.String(16), nullable=True),
    sa.Column("asset", sa.String(16), nullable=False),
    sa.Column("amount", coltypes.Money(), nullable=False),
    sa.Column("amount_usd", coltypes.Money(), nullable=False),
    sa.Column("credit_usd", coltypes.Money(), nullable=False),
    sa.Column("cost_usd", coltypes.Money(), nullable=False),
    sa.Column("eta_s", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("id", name="pk_plan_step"),
    sa.UniqueConstraint("plan_id", "step_no", name="uq_plan_step_plan_id_step_no"),
    sa.CheckConstraint(
        "mode IN ('pnl_offset', 'in_place', 'transfer', 'swap', 'withdrawal')",
        name="ck_plan_step_mode",
    ),
    sa.CheckConstraint(
        "from_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_plan_step_from_wallet",
    ),
    sa.CheckConstraint(
        "to_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_plan_step_to_wallet",
    ),
    sa.ForeignKeyConstraint(["plan_id"], ["plan.id"], name="fk_plan_step_plan_id_plan"),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_plan_step_venue_id_venue"),
    sa.ForeignKeyConstraint(["to_venue_id"], ["venue.id"], name="fk_plan_step_to_venue_id_venue"),
    sa.Index("ix_plan_step_plan_id", "plan_id"),
)
sa.Table(
    "transfer",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("idempotency_key", sa.String(32), nullable=False),
    sa.Column("margin_call_id", sa.String(64), nullable=True),
    sa.Column("plan_id", sa.String(64), nullable=True),
    sa.Column("step_no", sa.Integer(), nullable=True),
    sa.Column("source_id", sa.String(128), nullable=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("from_wallet", sa.String(16), nullable=False),
    sa.Column("to_venue_id", sa.String(64), nullable=False),
    sa.Column("to_wallet", sa.String(16), nullable=False),
    sa.Column("asset", sa.String(16), nullable=False),
    sa.Column("amount", coltypes.Money(), nullable=False),
    sa.Column("to_asset", sa.String(16), nullable=True),
    sa.Column("amount_usd", coltypes.Money(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("created_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("sent_at", coltypes.UtcDateTime(), nullable=True),
    sa.Column("finished_at", coltypes.UtcDateTime(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("venue_transfer_id", sa.String(128), nullable=True),
    sa.Column("error_kind", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("result", coltypes.JsonPayload(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_transfer"),
    sa.CheckConstraint(
        "mode IN ('pnl_offset', 'in_place', 'transfer', 'swap', 'withdrawal')",
        name="ck_transfer_mode",
    ),
    sa.CheckConstraint(
        "from_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_transfer_from_wallet",
    ),
    sa.CheckConstraint(
        "to_wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_transfer_to_wallet",
    ),
    sa.CheckConstraint(
        "status IN ('pending', 'sent', 'confirmed', 'failed', 'unknown')", name="ck_transfer_status"
    ),
    sa.ForeignKeyConstraint(
        ["plan_id", "step_no"],
        ["plan_step.plan_id", "plan_step.step_no"],
        name="fk_transfer_plan_id_plan_step",
    ),
    sa.UniqueConstraint("idempotency_key", name="uq_transfer_idempotency_key"),
    sa.ForeignKeyConstraint(
        ["margin_call_id"], ["margin_call.id"], name="fk_transfer_margin_call_id_margin_call"
    ),
    sa.ForeignKeyConstraint(["plan_id"], ["plan.id"], name="fk_transfer_plan_id_plan"),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_transfer_venue_id_venue"),
    sa.ForeignKeyConstraint(["to_venue_id"], ["venue.id"], name="fk_transfer_to_venue_id_venue"),
    sa.Index("ix_transfer_margin_call_id", "margin_call_id"),
    sa.Index("ix_transfer_plan_id", "plan_id"),
    sa.Index("ix_transfer_status", "status"),
)
sa.Table(
    "audit_event",
    METADATA,
    sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("ts_event", sa.BigInteger(), nullable=False),
    sa.Column("ts_init", sa.BigInteger(), nullable=False),
    sa.Column("margin_call_id", sa.String(64), nullable=True),
    sa.Column("plan_id", sa.String(64), nullable=True),
    sa.Column("transfer_key", sa.String(32), nullable=True),
    sa.Column("payload", coltypes.JsonPayload(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("seq", name="pk_audit_event"),
    sa.UniqueConstraint("event_id", name="uq_audit_event_event_id"),
    sa.UniqueConstraint("hash", name="uq_audit_event_hash"),
    sa.Index("ix_audit_event_kind", "kind"),
    sa.Index("ix_audit_event_margin_call_id", "margin_call_id"),
)
sa.Table(
    "recon_drift",
    METADATA,
    sa.Column("id", _ID, nullable=False),
    sa.Column("detected_at", coltypes.UtcDateTime(), nullable=False),
    sa.Column("venue_id", sa.String(64), nullable=False),
    sa.Column("wallet", sa.String(16), nullable=False),
    sa.Column("asset", sa.String(16), nullable=False),
    sa.Column("expected", coltypes.Money(), nullable=False),
    sa.Column("reported", coltypes.Money(), nullable=False),
    sa.Column("drift", coltypes.Money(), nullable=False),
    sa.Column("drift_usd", coltypes.Money(), nullable=True),
    sa.Column("tolerance", coltypes.Money(), nullable=False),
    sa.Column("expected_snapshot_id", sa.BigInteger(), nullable=True),
    sa.Column("reported_snapshot_id", sa.BigInteger(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("resolved_at", coltypes.UtcDateTime(), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id", name="pk_recon_drift"),
    sa.CheckConstraint(
        "wallet IN ('spot', 'funding', 'margin', 'um', 'cm', 'options', 'pm')",
        name="ck_recon_drift_wallet",
    ),
    sa.CheckConstraint("status IN ('open', 'explained', 'resolved')", name="ck_recon_drift_status"),
    sa.ForeignKeyConstraint(["venue_id"], ["venue.id"], name="fk_recon_drift_venue_id_venue"),
    sa.ForeignKeyConstraint(
        ["expected_snapshot_id"],
        ["snapshot.id"],
        name="fk_recon_drift_expected_snapshot_id_snapshot",
    ),
    sa.ForeignKeyConstraint(
        ["reported_snapshot_id"],
        ["snapshot.id"],
        name="fk_recon_drift_reported_snapshot_id_snapshot",
    ),
    sa.Index("ix_recon_drift_detected_at", "detected_at"),
)


def upgrade() -> None:
    """Create the 14 tables and their indexes (nothing else existed in that release)."""
    METADATA.create_all(op.get_bind())


def downgrade() -> None:
    """Drop every table of the baseline (its rows with it)."""
    METADATA.drop_all(op.get_bind())
