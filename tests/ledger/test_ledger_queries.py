"""Named SQL: the loader's format rules, and every query in sql/queries run with rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_helpers import T0
from sqlmodel import Session

from core.domain import Asset, Balance, WalletKind
from core.errors import ConfigError
from core.ledger.audit_log import append_audit_event
from core.ledger.keys import leg_key
from core.ledger.plans import record_margin_call
from core.ledger.queries import SQL_DIR, load_queries, parse_named_queries, run_query
from core.ledger.store import record_snapshot, view_statements
from core.ledger.tables import MarginCallRow
from core.ledger.transfers import (
    TransferIntent,
    record_transfer_intent,
    record_transfer_result,
)
from core.ledger.vocab import CallStatus, SnapshotSource, TransferMode, TransferState


def test_parse_with_two_blocks_keeps_why_continuation_and_strips_semicolon() -> None:
    qs = parse_named_queries(
        "-- file header, ignored\n"
        "-- name: open_calls\n"
        "-- why: what is still being cured,\n"
        "--      oldest first\n"
        "SELECT id FROM margin_call\nWHERE status = :status;\n\n"
        "-- name: one\n-- why: a second block\nSELECT 1;\n",
        "x.sql",
    )
    assert list(qs) == ["open_calls", "one"]
    assert qs["open_calls"].why == "what is still being cured, oldest first"
    assert qs["open_calls"].sql == "SELECT id FROM margin_call\nWHERE status = :status"
    assert qs["one"].source == "x.sql:8"


@pytest.mark.parametrize(
    ("sql_text", "match"),
    [
        ("-- name: q\nSELECT 1;\n", "no '-- why:' line"),
        ("-- name: q\n-- why: because\n\n", "no SQL"),
        ("-- name: q\n-- why: a\nSELECT 1;\n-- name: q\n-- why: b\nSELECT 2;\n", "duplicate"),
        ("-- name: Bad-Name\n-- why: a\nSELECT 1;\n", "lower-case identifier"),
    ],
)
def test_parse_with_malformed_block_raises_config_error_naming_line(
    sql_text: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_named_queries(sql_text, "bad.sql")
    assert str(info.value.context["where"]).startswith("bad.sql:")


def test_load_queries_with_name_in_two_files_raises(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: q\n-- why: a\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: q\n-- why: b\nSELECT 2;\n")
    with pytest.raises(ConfigError, match="duplicate query name across files"):
        load_queries(tmp_path)


def test_repository_sql_files_all_parse_with_a_why_line() -> None:
    queries = load_queries()
    assert set(queries) == {
        "unsettled_transfers",
        "open_margin_calls",
        "latest_venue_balances",
        "audit_trail_for_call",
    }
    views = view_statements()
    assert set(views) == {"transfer_latency_by_route", "source_mix_per_call",
                          "transfer_failure_rates", "venue_failure_rates"}  # fmt: skip
    assert all(q.why for q in queries.values())
    assert all(sql.startswith("CREATE OR REPLACE VIEW") for sql in views.values())
    assert (SQL_DIR / "schema.sql").is_file()


def _seed(session: Session) -> None:
    record_margin_call(
        session,
        MarginCallRow(
            id="mc-1", pool_id="sim-a.pm", venue_id="sim-a", status=CallStatus.OPEN.value,
            raised_at=T0, ratio_at_raise=Decimal("1.18"), target_ratio=Decimal("1.5"),
            deficit_usd=Decimal("250000"),
        ),
    )  # fmt: skip
    record_margin_call(
        session,
        MarginCallRow(
            id="mc-0", pool_id="sim-b.um", venue_id="sim-b", status=CallStatus.CURED.value,
            raised_at=T0 - timedelta(hours=1), target_ratio=Decimal("1.5"),
            deficit_usd=Decimal("1000"),
        ),
    )  # fmt: skip
    for i, status in enumerate([TransferState.CONFIRMED, TransferState.UNKNOWN, None]):
        key = leg_key("manual", 1, 0, i)
        intent = TransferIntent(
            key=key, mode=TransferMode.TRANSFER, venue_id="sim-a", from_wallet=WalletKind.SPOT,
            to_wallet=WalletKind.UM, asset=Asset("USDT"), amount=Decimal("1000.25"),
            margin_call_id="mc-1",
        )  # fmt: skip
        record_transfer_intent(session, intent, at=T0 + timedelta(seconds=i))
        if status is not None:
            record_transfer_result(session, key, status, at=T0, sent_at=T0)
    for minutes, usdt in ((0, "1000"), (5, "1250.5")):
        record_snapshot(
            session, taken_at=T0 + timedelta(minutes=minutes), source=SnapshotSource.VENUE,
            venue_id="sim-a",
            balances=[
                Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal(usdt)),
                Balance("sim-a", WalletKind.SPOT, Asset("BTC"), Decimal("0.5"), Decimal("0.1")),
            ],
        )  # fmt: skip
    for i in range(3):
        append_audit_event(
            session, event_id=f"e{i}", kind="TransferRequested", ts_event=i, ts_init=i,
            payload={"i": i}, margin_call_id="mc-1" if i != 1 else "mc-0", key=None,
        )  # fmt: skip
    session.flush()


def test_named_queries_with_seeded_store_return_the_expected_rows(
    session: Session, venues: object
) -> None:
    _seed(session)
    q = load_queries()
    unsettled = run_query(session, q["unsettled_transfers"])
    assert [(r["idempotency_key"], r["status"]) for r in unsettled] == [
        (leg_key("manual", 1, 0, 1), "unknown"),
        (leg_key("manual", 1, 0, 2), "pending"),
    ]
    assert [r["id"] for r in run_query(session, q["open_margin_calls"])] == ["mc-1"]
    balances = run_query(session, q["latest_venue_balances"], venue_id="sim-a")
    got = {(r["wallet"], r["asset"]): Decimal(str(r["amount"])) for r in balances}
    assert got == {("spot", "BTC"): Decimal("0.5"), ("um", "USDT"): Decimal("1250.5")}
    trail = run_query(session, q["audit_trail_for_call"], margin_call_id="mc-1")
    assert [r["seq"] for r in trail] == [1, 3]
