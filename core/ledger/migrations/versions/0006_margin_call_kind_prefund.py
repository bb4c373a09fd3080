"""margin call kind prefund

Why: ``pmr prefund --apply`` executes a pre-funding recommendation through the executor
(issue 15 point 3). A pre-funding run is recorded as a ``margin_call`` row of kind ``prefund``,
so its legs get keys, intents, the gate, audit events and ``pmr audit show --call`` exactly as a
margin call's do. This revision adds:

* ``margin_call.kind`` (``margin_call`` | ``prefund``, CHECK): every existing row is a margin
  call (the server default fills it; no other column changes);
* the call statuses ``applied`` and ``partial`` (a pre-funding's end: every move confirmed, or
  some refused or failed) in the ``status`` CHECK;
* the one-open-call-per-pool index limited to margin calls (``... AND kind = 'margin_call'``):
  an open pre-funding into a pool must neither block that pool's margin call nor be returned
  for it. Existing open calls are margin calls, so the index holds the same rows as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 07:26:09.400950
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status = 'open'"
_OPEN_MARGIN_CALL = "status = 'open' AND kind = 'margin_call'"
_STATUSES = "'open', 'cured', 'escalated', 'cancelled'"


def upgrade() -> None:
    with op.batch_alter_table("margin_call", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(16), server_default="margin_call", nullable=False)
        )
        # Autogenerate does not see CHECK constraints nor a partial index's predicate.
        batch_op.create_check_constraint("kind", "kind IN ('margin_call', 'prefund')")
        batch_op.drop_constraint(batch_op.f("ck_margin_call_status"), type_="check")
        batch_op.create_check_constraint("status", f"status IN ({_STATUSES}, 'applied', 'partial')")
        batch_op.drop_index(
            "uq_margin_call_open_pool_id",
            sqlite_where=sa.text(_OPEN),
            postgresql_where=sa.text(_OPEN),
        )
        batch_op.create_index(
            "uq_margin_call_open_pool_id",
            ["pool_id"],
            unique=True,
            sqlite_where=sa.text(_OPEN_MARGIN_CALL),
            postgresql_where=sa.text(_OPEN_MARGIN_CALL),
        )


def downgrade() -> None:
    with op.batch_alter_table("margin_call", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_margin_call_open_pool_id",
            sqlite_where=sa.text(_OPEN_MARGIN_CALL),
            postgresql_where=sa.text(_OPEN_MARGIN_CALL),
        )
        batch_op.create_index(
            "uq_margin_call_open_pool_id",
            ["pool_id"],
            unique=True,
            sqlite_where=sa.text(_OPEN),
            postgresql_where=sa.text(_OPEN),
        )
        batch_op.drop_constraint(batch_op.f("ck_margin_call_status"), type_="check")
        batch_op.create_check_constraint("status", f"status IN ({_STATUSES})")
        batch_op.drop_constraint(batch_op.f("ck_margin_call_kind"), type_="check")
        batch_op.drop_column("kind")
