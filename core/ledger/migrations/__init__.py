"""The store's schema history: Alembic migrations shipped inside the package (DESIGN §8).

``pmr db init`` upgrades a store to head (creating it if needed), ``pmr db upgrade`` upgrades
an existing one, ``pmr db info`` shows where it stands. Revision ``0001`` is the schema of the
last release without migrations (commit 77b45ba); such a store is recognised and stamped.
How to add a schema change: docs/store.md, "How to add a schema change".
"""

from core.ledger.migrations.config import BASELINE, alembic_config, head_revision
from core.ledger.migrations.status import SchemaStatus, baseline_differences, read_status

__all__ = [
    "BASELINE",
    "SchemaStatus",
    "alembic_config",
    "baseline_differences",
    "head_revision",
    "read_status",
]
