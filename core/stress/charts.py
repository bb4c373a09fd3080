"""Charts a risk officer reads faster than a table: PNG and HTML, no browser needed.

Altair (Vega-Lite) draws; vl-convert renders the PNG in-process (no Chrome, no Node), so
charts come out on a headless server or in CI. Two charts:

``stress_heatmap``
    Margin ratio per scenario (rows) × pool (columns), coloured from red (at or below
    liquidation) to green, the desk level written in each cell.
``mc_distribution``
    Each pool's Monte Carlo ratio distribution (histogram), one panel per pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from core.stress.montecarlo import PoolMonteCarlo

__all__ = ["mc_distribution", "stress_heatmap", "write_charts"]


def stress_heatmap(df: pl.DataFrame) -> Any:
    """Ratio per pool × scenario as an Altair heat map (ratios clipped to [−1, 5] for colour)."""
    import altair as alt

    data = df.select(
        "pool",
        "scenario",
        "desk_level",
        pl.col("ratio").clip(-1.0, 5.0).alias("ratio_shown"),
        pl.col("ratio").round(3),
    ).to_dicts()
    source = alt.Data(values=data)  # type: ignore[no-untyped-call]
    base = alt.Chart(source).encode(
        x=alt.X("pool:N", sort=None, title=None, axis=alt.Axis(orient="top", labelAngle=0)),
        y=alt.Y("scenario:N", sort=None, title=None, axis=alt.Axis(labelLimit=300)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "ratio_shown:Q",
            title="margin ratio",
            scale=alt.Scale(
                domain=[-1, 1, 1.6, 5], range=["#7f0000", "#d73027", "#fee08b", "#1a9850"]
            ),
        ),
        tooltip=["pool:N", "scenario:N", "ratio:Q", "desk_level:N"],
    )
    text = base.mark_text(fontSize=10).encode(text="desk_level:N")
    return (cells + text).properties(
        title="Margin ratio after each scenario (desk level in each cell)",
        width=110 * df["pool"].n_unique(),
        height=18 * df["scenario"].n_unique(),
    )


def mc_distribution(mc: Sequence[PoolMonteCarlo]) -> Any:
    """Monte Carlo ratio histograms, one row per pool."""
    import altair as alt
    import numpy as np

    values = [
        {"pool": x.pool_id, "ratio": float(r)}
        for x in mc
        for r in np.clip(x.ratios[np.isfinite(x.ratios)], -1.0, 10.0)
    ]
    return (
        alt.Chart(alt.Data(values=values))  # type: ignore[no-untyped-call]
        .mark_bar()
        .encode(
            x=alt.X("ratio:Q", bin=alt.Bin(maxbins=60), title="margin ratio after one day"),
            y=alt.Y("count():Q", title="paths"),
            row=alt.Row("pool:N", title=None),
        )
        .properties(title=f"Monte Carlo: {mc[0].ratios.size:,} paths", width=480, height=90)
    )


def write_charts(df: pl.DataFrame, mc: Sequence[PoolMonteCarlo], out_dir: Path) -> list[Path]:
    """Write ``stress_heatmap.{png,html}`` (and ``mc_distribution.{png,html}`` with paths)."""
    import vl_convert as vlc

    charts = {"stress_heatmap": stress_heatmap(df)}
    if mc:
        charts["mc_distribution"] = mc_distribution(mc)
    written = []
    for name, chart in charts.items():
        spec = chart.to_json()
        png = out_dir / f"{name}.png"
        png.write_bytes(vlc.vegalite_to_png(spec, scale=2))
        html = out_dir / f"{name}.html"
        html.write_text(vlc.vegalite_to_html(spec))
        written += [png, html]
    return written
