"""Stress results land in the store, one row per pool × scenario, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, select

from core.config import load_desk
from core.ledger.tables import StressResultRow
from core.stress.evaluate import evaluate
from core.stress.report import record_stress_results
from core.stress.scenarios import library

DESK = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_stress_results_are_recorded_exactly(session: Session) -> None:
    lib = library(venues=["sim-a", "sim-b"], assets=list(DESK.assets), stablecoins=["USDT", "USDC"])
    rows = evaluate(DESK, DESK.initial_portfolio(AT), [lib["joint-btc-30%-vol+50%"]])
    assert record_stress_results(session, "run-1", rows, lib, DESK, at=AT) == 3
    session.commit()
    stored = {r.pool_id: r for r in session.exec(select(StressResultRow)).all()}
    opt = next(r for r in rows if r.pool_id == "sim-b.opt")
    assert stored["sim-b.opt"].deficit_usd == opt.deficit_usd
    assert stored["sim-b.opt"].covered_600s_usd == opt.covered_10m_usd
    assert stored["sim-b.opt"].band_after == "liquidation"
    assert stored["sim-b.opt"].detail == {
        "venue_band": opt.venue_band,
        "liquidation_before_cover": opt.liquidation_before_cover,
        "stale_prices": False,
        "worst_position": "sim-b/options/BTC-270326-80000-P",
    }
    assert stored["sim-a.pm"].scenario_kind == "joint"
