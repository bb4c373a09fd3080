"""The stress report: a polars frame with exact money, and a markdown page naming the worst."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from core.config import load_desk
from core.stress.evaluate import evaluate
from core.stress.report import frame, markdown_summary
from core.stress.scenarios import library

DESK = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
STATE = DESK.initial_portfolio(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
LIB = library(venues=[v.name for v in DESK.venues], assets=list(DESK.assets),
              stablecoins=["USDT", "USDC"])  # fmt: skip
PICK = ["joint-btc-30%-vol+50%", "hist-2020-03-black-thursday-24h", "halt@sim-a"]
ROWS = evaluate(DESK, STATE, [LIB[n] for n in PICK])


def test_frame_has_one_exact_row_per_pool_and_scenario() -> None:
    df = frame(ROWS, LIB)
    assert df.height == len(PICK) * len(DESK.pools)
    assert df.schema["deficit"] == pl.Decimal(precision=24, scale=2)
    assert df.schema["ratio"] == pl.Float64
    row = df.filter((pl.col("pool") == "sim-b.opt") & (pl.col("scenario") == PICK[0])).row(
        0, named=True
    )
    src = next(r for r in ROWS if r.pool_id == "sim-b.opt" and r.scenario == PICK[0])
    assert row["deficit"] == src.deficit_usd
    assert row["kind"] == "joint"
    assert row["desk_level"] == "liquidation"


def test_markdown_names_the_worst_pool_first() -> None:
    df = frame(ROWS, LIB)
    md = markdown_summary(df, advice=["move 1 USDT"])
    worst = df.sort("ratio").row(0, named=True)
    table = md.split("## Worst pools")[1]
    first = next(ln for ln in table.splitlines() if ln.startswith("| ") and "pool |" not in ln)
    assert first.startswith(f"| {worst['pool']} | {worst['scenario']} |")
    assert "3 pools × 3 scenarios" in md
    assert "## Pre-funding advice\n\n- move 1 USDT" in md
    assert f"{Decimal(str(worst['deficit'])):,.0f}" in first
