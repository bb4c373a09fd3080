"""Stress results as a polars frame, a markdown summary and store rows (DESIGN §4).

The frame has one row per pool × scenario::

    pool, scenario, kind, ratio (f64), desk_level, venue_band, deficit, covered_10s,
    covered_60s, covered_10m, uncovered (USD, Decimal(scale=2)), liquidation_before_cover,
    stale_prices (bool), worst_position (str, null without positions)

Money stays exact (polars ``Decimal``); the ratio is a float (a display and sort key, not a
booked amount).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import polars as pl

from core.stress.evaluate import PoolStress
from core.stress.scenarios import Scenario

if TYPE_CHECKING:
    from sqlmodel import Session

    from core.config import DeskConfig

__all__ = ["frame", "markdown_summary", "record_stress_results"]

_MONEY = pl.Decimal(precision=24, scale=2)


def frame(rows: Sequence[PoolStress], scenarios: Mapping[str, Scenario]) -> pl.DataFrame:
    """The results as a polars frame (schema in the module doc), in ``rows`` order."""
    return pl.DataFrame(
        {
            "pool": [r.pool_id for r in rows],
            "scenario": [r.scenario for r in rows],
            "kind": [scenarios[r.scenario].kind.value for r in rows],
            "ratio": [None if r.ratio is None else float(r.ratio) for r in rows],
            "desk_level": [r.desk_level for r in rows],
            "venue_band": [r.venue_band for r in rows],
            "deficit": [r.deficit_usd for r in rows],
            "covered_10s": [r.covered_10s_usd for r in rows],
            "covered_60s": [r.covered_60s_usd for r in rows],
            "covered_10m": [r.covered_10m_usd for r in rows],
            "uncovered": [r.uncovered_usd for r in rows],
            "liquidation_before_cover": [r.liquidation_before_cover for r in rows],
            "stale_prices": [r.stale_prices for r in rows],
            "worst_position": [r.worst_position for r in rows],
        },
        schema_overrides={
            "ratio": pl.Float64,
            **dict.fromkeys(
                ("deficit", "covered_10s", "covered_60s", "covered_10m", "uncovered"), _MONEY
            ),
        },
    )


def _usd(x: Decimal | float | None) -> str:
    return "-" if x is None else f"{Decimal(str(x)):,.0f}"


def markdown_summary(df: pl.DataFrame, *, advice: Sequence[str] = (), top: int = 5) -> str:
    """A markdown page naming the worst pools, what cannot be covered in time, and advice."""
    n_pools, n_scen = df["pool"].n_unique(), df["scenario"].n_unique()
    breach = df.filter(pl.col("desk_level").is_in(["call", "reduce_only", "liquidation"]))
    lines = [
        f"# Stress test: {n_pools} pools × {n_scen} scenarios",
        "",
        f"- pool-scenarios at or below `call`: **{breach.height}** of {df.height}",
        f"- reaching `liquidation`: **{df.filter(pl.col('desk_level') == 'liquidation').height}**",
        f"- liquidated before enough collateral lands: "
        f"**{df.filter(pl.col('liquidation_before_cover')).height}**",
        f"- uncovered after 10 min, worst case: **{_usd(df['uncovered'].max())} USD**",  # type: ignore[arg-type]
        "",
        "## Worst pools",
        "",
        "| pool | worst scenario | ratio | desk level | deficit USD | covered 60 s | uncovered 10 min |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    worst = (
        df.sort(["pool", "ratio"], nulls_last=True)
        .group_by("pool", maintain_order=True)
        .first()
        .sort("ratio", nulls_last=True)
        .head(top)
    )
    for r in worst.iter_rows(named=True):
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(
            f"| {r['pool']} | {r['scenario']} | {ratio} | {r['desk_level']} | "
            f"{_usd(r['deficit'])} | {_usd(r['covered_60s'])} | {_usd(r['uncovered'])} |"
        )
    short = df.filter(pl.col("uncovered") > 0).sort("uncovered", descending=True).head(top)
    if short.height:
        lines += ["", "## Not coverable within 10 minutes", ""]
        for r in short.iter_rows(named=True):
            lines.append(
                f"- {r['pool']} in `{r['scenario']}`: {_usd(r['uncovered'])} USD of "
                f"{_usd(r['deficit'])} USD uncovered"
            )
    if advice:
        lines += ["", "## Pre-funding advice", "", *[f"- {a}" for a in advice]]
    return "\n".join(lines) + "\n"


def record_stress_results(
    session: Session,
    run_id: str,
    rows: Sequence[PoolStress],
    scenarios: Mapping[str, Scenario],
    desk: DeskConfig,
    *,
    at: datetime,
) -> int:
    """Write one ``stress_result`` row per pool × scenario of run ``run_id``; return the count.

    All or nothing: the rows are added in the caller's transaction (commit is the caller's).
    ``band_after`` holds the desk level; the venue band and flags go to ``detail``.
    """
    from core.ledger.store import ensure_venue
    from core.ledger.tables import StressResultRow
    from core.ledger.vocab import VenueMode

    pool_venues = {p.id: p.venue for p in desk.pools}
    for v in desk.venues:
        mode = VenueMode.SIM if v.kind == "sim" else VenueMode.LIVE
        ensure_venue(session, v.name, exchange=v.exchange, mode=mode, at=at)
    for r in rows:
        session.add(
            StressResultRow(
                run_id=run_id,
                scenario=r.scenario,
                scenario_kind=scenarios[r.scenario].kind.value,
                pool_id=r.pool_id,
                venue_id=pool_venues[r.pool_id],
                computed_at=at,
                ratio_after=r.ratio,
                band_after=r.desk_level,
                deficit_usd=r.deficit_usd,
                covered_10s_usd=r.covered_10s_usd,
                covered_60s_usd=r.covered_60s_usd,
                covered_600s_usd=r.covered_10m_usd,
                uncovered_usd=r.uncovered_usd,
                detail={
                    "venue_band": r.venue_band,
                    "liquidation_before_cover": r.liquidation_before_cover,
                    "stale_prices": r.stale_prices,
                    "worst_position": r.worst_position,
                },
            )
        )
    session.flush()
    return len(rows)
