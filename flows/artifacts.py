"""Artifact rows and pages for the flows: formatting only (no Prefect, no decisions).

Each function turns a core result into the rows of a Prefect table artifact (a list of flat
dicts, one per row) or the text of a markdown artifact, so a test can read exactly what the UI
shows.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from core.execution.monitor import MonitorCycle
    from core.execution.orchestration import Movement
    from core.ledger.reconcile import ReconReport
    from core.routing.plan import Plan

__all__ = [
    "chart_markdown",
    "drift_rows",
    "monitor_rows",
    "movement_rows",
    "num",
    "plan_rows",
    "stress_rows",
]


def num(value: Decimal | float | None, places: int | None = None) -> str:
    """Plain notation with thousands separators, no trailing zeros (``1,250.5``); ``-`` for None.

    >>> num(Decimal("1250.500")), num(None), num(Decimal("0.000")), num(2.5, 2)
    ('1,250.5', '-', '0', '2.50')
    """
    if value is None:
        return "-"
    if places is not None:
        return f"{float(value):,.{places}f}"
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    return format(d.normalize(), ",f") if d else "0"


def drift_rows(report: ReconReport) -> list[dict[str, Any]]:
    """One row per drift: venue, wallet, asset, expected, reported, drift, cause, note."""
    return [
        {
            "venue": d.venue,
            "wallet": d.wallet.value,
            "asset": d.asset,
            "expected": num(d.expected),
            "reported": num(d.reported),
            "drift": ("+" if d.drift > 0 else "") + num(d.drift),
            "cause": d.cause.value,
            "note": d.note,
        }
        for d in report.drifts
    ]


def plan_rows(plan: Plan, version: int) -> list[dict[str, Any]]:
    """One row per leg of a plan: where it takes collateral from and to, what, how, cost."""
    rows = []
    for step_no, a in enumerate(plan.allocations):
        for leg in a.legs:
            rows.append(
                {
                    "leg": f"v{version}/{step_no}/{leg.leg_no}",
                    "source": a.source,
                    "kind": leg.kind.value,
                    "origin": f"{leg.venue}/{leg.from_wallet.value}",
                    "destination": f"{leg.destination_venue}/{leg.to_wallet.value}",
                    "route": leg.route_id or "-",
                    "amount": f"{num(leg.amount)} {leg.asset}",
                    "usd": num(leg.amount_usd, 2),
                }
            )
    return rows


def movement_rows(movements: Sequence[Movement]) -> list[dict[str, Any]]:
    """One row per movement of a call: origin, destination, mode, state, attempts, latency."""
    return [
        {
            "leg": m.leg,
            "source": m.source_id,
            "mode": m.mode,
            "origin": m.origin,
            "destination": m.destination,
            "amount": f"{num(m.amount)} {m.asset}" + (f" -> {m.to_asset}" if m.to_asset else ""),
            "usd": num(m.amount_usd, 2),
            "state": m.state,
            "attempts": m.attempts,
            "latency_ms": "-" if m.latency_ms is None else round(m.latency_ms, 1),
            "venue_id": m.venue_transfer_id or "-",
            "error": m.error,
        }
        for m in movements
    ]


def monitor_rows(cycle: MonitorCycle) -> list[dict[str, Any]]:
    """One row per pool of a monitor cycle: ratio, level, call level, due or held."""
    held = set(cycle.held)
    return [
        {
            "pool": m.pool_id,
            "venue": m.venue,
            "ratio": num(m.ratio, 4) if m.ratio is not None else "-",
            "desk_level": m.desk_level,
            "call_level": num(m.call_level),
            "action": "held (escalated recently)"
            if m.pool_id in held
            else ("margin call" if m.due else "-"),
        }
        for m in cycle.marks
    ]


def chart_markdown(title: str, png: Path) -> str:
    """A markdown page showing a PNG chart inline (a data URI) and where the file is."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f"# {title}\n\n![{title}](data:image/png;base64,{data})\n\nFile: `{png}`\n"


def stress_rows(df: pl.DataFrame, limit: int = 500) -> list[dict[str, Any]]:
    """The first ``limit`` rows of a stress frame (``core.stress.report.frame``), JSON-ready:
    USD in plain notation, the ratio to 4 places."""
    out = []
    for r in df.head(limit).iter_rows(named=True):
        out.append(
            {
                k: (
                    num(v, 4)
                    if k == "ratio" and v is not None
                    else num(v, 2)
                    if isinstance(v, Decimal)
                    else v
                )
                for k, v in r.items()
            }
        )
    return out
