"""``pmr reconcile`` end to end on the example desk: a baseline, a clean second run (exit 0), a
venue that changed behind the ledger's back (exit 1, drift recorded), bad input (exit 2)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from core.ledger.store import init_db, make_engine
from flows.cli import app

runner = CliRunner()
EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


def _store(tmp_path: Path) -> str:
    path = tmp_path / "pmr.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    engine.dispose()
    return str(path)


def _run(desk: Path, db: str) -> tuple[int, str]:
    result = runner.invoke(
        app, ["reconcile", "--desk", str(desk), "--url", f"sqlite:///{db}", "--unkeyed"]
    )
    return result.exit_code, result.output


def test_reconcile_baseline_then_agreement_then_drift(tmp_path: Path) -> None:
    db = _store(tmp_path)
    code, text = _run(EXAMPLE_DESK, db)
    assert code == 0, text
    assert "sim-a: snapshot #1 (baseline)" in text
    code, text = _run(EXAMPLE_DESK, db)
    assert code == 0, text
    assert "venues and store agree; 16 balances compared, 0 leg(s) in flight" in text
    # The venue now holds 250 USDT less in its UM wallet than the ledger knows of.
    changed = tmp_path / "desk.toml"
    changed.write_text(
        EXAMPLE_DESK.read_text().replace(
            'wallet = "um"\nasset = "USDT"\namount = "250000"',
            'wallet = "um"\nasset = "USDT"\namount = "249750"',
            1,
        )
    )
    code, text = _run(changed, db)
    assert code == 1, text
    assert "1 drift(s) recorded" in text
    assert "-250" in text
    assert "funding" in text
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT venue_id, wallet, asset, drift, status FROM recon_drift"
        ).fetchall()
        anchors = conn.execute("SELECT recorded_by FROM audit_anchor").fetchall()
    assert [(v, w, a, float(d), s) for v, w, a, d, s in rows] == [
        ("sim-a", "um", "USDT", -250.0, "open")
    ]
    assert anchors == [("reconcile",)] * 3


def test_reconcile_with_missing_store_or_bad_desk_exits_2(tmp_path: Path) -> None:
    code, text = _run(EXAMPLE_DESK, str(tmp_path / "none.db"))
    assert code == 2
    assert "no store found" in text
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE_DESK.read_text() + '\n[reconcile]\ntolerance = { XRP = "1" }\n')
    code, text = _run(bad, _store(tmp_path))
    assert code == 2
    assert "reconcile.tolerance: unknown asset 'XRP'" in text
