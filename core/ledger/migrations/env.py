"""Alembic's entry point for the store's migrations; the configuration is in ``config.py``."""

from core.ledger.migrations.config import run_env

run_env()
