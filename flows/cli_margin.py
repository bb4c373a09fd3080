"""``pmr margin``: the margin report of a self-contained portfolio or of every pool of a desk.

Orchestration only: the work is ``core.margin``. JSON goes to stdout (one report, or a list
for ``--desk``); ``--table`` prints it for people. A ``PmrError`` prints one line, exit code 2.
Options that mean nothing together (``--pool`` or ``--as-of`` with ``--portfolio``, whose file
is one pool at its own ``as_of``; ``--params`` with ``--desk``) are refused, not ignored.

Examples
--------
::

    $ pmr margin --portfolio examples/portfolio.json
    $ pmr margin --portfolio examples/portfolio.json --model standard --table
    $ pmr margin --desk examples/desk.toml --table
    $ pmr margin --desk examples/desk.toml --pool sim-b.um --as-of 2026-11-27T12:00:00Z
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.errors import ConfigError
from flows.cli_common import (
    AsOfOption,
    as_of_or_now,
    handles_pmr_errors,
    out,
    parse_as_of,
    refuse_option,
    require_one_of,
)

if TYPE_CHECKING:  # the engine loads inside the command, so `pmr --help` stays fast
    from core.domain import MarginModelKind
    from core.margin.report import MarginReport

__all__ = ["margin", "print_report_table", "register"]


def _fmt(x: Decimal | None, places: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.{places}f}"


def print_report_table(report: MarginReport) -> None:
    """Print a report for people: summary, per-unit worst scenarios, largest contributions."""
    from rich.table import Table

    mc = report.margin_currency
    summary = Table(title=f"pool {report.pool_id} — model {report.model.value}")
    summary.add_column("figure")
    summary.add_column("USD", justify="right")
    summary.add_column(f"in {mc}", justify="right")
    money: list[tuple[str, Decimal | None]] = [
        ("equity", report.equity_usd),
        ("adjusted equity", report.adjusted_equity_usd),
        ("initial margin", report.im_usd),
        ("maintenance margin", report.mm_usd),
        ("max withdraw", report.max_withdraw_usd),
        (f"deficit to target {report.thresholds.target}", report.deficit(report.thresholds.target)),
        ("standard MM", report.standard_mm_usd),
    ]
    if report.crash_loss_weighted_usd is not None:
        money.append(("crash loss (raw)", report.crash_loss_raw_usd))
        money.append(("crash loss (weighted)", report.crash_loss_weighted_usd))
    for name, usd in money:
        in_mc = None if usd is None else report.in_margin_currency(usd)
        summary.add_row(name, _fmt(usd), _fmt(in_mc, 6))
    out.print(summary)
    state = Table(title="margin state")
    state.add_column("measure")
    state.add_column("value", justify="right")
    state.add_row("margin ratio", _fmt(report.ratio, 4))
    state.add_row("venue band", report.venue_band.value)
    state.add_row("desk level", report.desk_level.value)
    state.add_row("capital efficiency (standard MM / MM)", _fmt(report.capital_efficiency, 3))
    out.print(state)
    if report.worst_scenarios:
        units = Table(title="worst scenario per risk unit")
        for col in ("unit", "scenario", "loss USD", "credit USD", "IM USD", "MM USD"):
            units.add_column(col, justify="left" if col in ("unit", "scenario") else "right")
        for u in report.worst_scenarios:
            units.add_row(
                u.unit,
                u.scenario_id,
                _fmt(u.loss_usd),
                _fmt(u.credit_usd),
                _fmt(u.im_usd),
                _fmt(u.mm_usd),
            )
        out.print(units)
    if report.silos:
        silos = Table(title="silos (standard model)")
        for col in ("wallet", "adjusted equity USD", "IM USD", "MM USD"):
            silos.add_column(col, justify="left" if col == "wallet" else "right")
        for s in report.silos:
            silos.add_row(s.wallet, _fmt(s.adjusted_equity_usd), _fmt(s.im_usd), _fmt(s.mm_usd))
        out.print(silos)
    if report.contributions:
        contrib = Table(title="contributions")
        for col in ("position", "unit", "value USD", "worst loss USD", "MM USD"):
            contrib.add_column(col, justify="left" if col in ("position", "unit") else "right")
        ranked = sorted(
            report.contributions,
            key=lambda c: -(c.worst_loss_usd if c.worst_loss_usd is not None else c.mm_usd or 0),
        )
        for c in ranked[:20]:
            contrib.add_row(
                c.key, c.unit, _fmt(c.value_usd), _fmt(c.worst_loss_usd), _fmt(c.mm_usd)
            )
        out.print(contrib)


def _parse_model(model: str | None) -> MarginModelKind | None:
    from core.domain import MarginModelKind

    if model is None:
        return None
    try:
        return MarginModelKind(model)
    except ValueError:
        known = ", ".join(k.value for k in MarginModelKind)
        raise ConfigError(f"unknown margin model {model!r}; known: {known}") from None


@handles_pmr_errors
def margin(
    portfolio: Annotated[
        Path | None,
        typer.Option(
            "--portfolio",
            metavar="FILE",
            help="Self-contained portfolio JSON (schema in docs/margin.md).",
        ),
    ] = None,
    desk: Annotated[
        Path | None,
        typer.Option(
            "--desk", metavar="FILE", help="Desk TOML: report every pool from its initial state."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="MODEL",
            help="unified | scenario | standard (default: the pool's).",
        ),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            metavar="FILE",
            help="With --portfolio: margin-parameters JSON overriding the file's 'params'.",
        ),
    ] = None,
    pool: Annotated[
        str | None, typer.Option("--pool", metavar="ID", help="With --desk: only this pool.")
    ] = None,
    as_of: AsOfOption = None,
    table: Annotated[bool, typer.Option("--table", help="Print tables instead of JSON.")] = False,
) -> None:
    """Compute margin reports (JSON on stdout, or tables with --table)."""
    kind = _parse_model(model)
    at = parse_as_of(as_of)
    require_one_of({"--portfolio FILE": portfolio, "--desk FILE": desk})
    if portfolio is not None:
        refuse_option("--pool", pool, because="goes with --desk; a portfolio file is one pool")
        refuse_option(
            "--as-of", as_of, because="goes with --desk; a portfolio file carries its own as_of"
        )
    else:
        refuse_option("--params", params, because="goes with --portfolio; a desk has its own")

    from core.config import load_desk
    from core.margin.api import evaluate_pool, evaluate_portfolio, params_for_pool
    from core.margin.portfolio_file import load_portfolio_file

    reports: list[MarginReport] = []
    if portfolio is not None:
        pf_file = load_portfolio_file(portfolio, params)
        pool_spec = pf_file.pool_spec(kind)
        reports.append(
            evaluate_portfolio(pf_file.to_portfolio(), pool_spec, pf_file.params, model=kind)
        )
    elif desk is not None:
        desk_cfg = load_desk(desk)
        if pool is not None:
            desk_cfg.pool(pool)  # an unknown pool id is refused before anything is computed
        state = desk_cfg.initial_portfolio(as_of_or_now(at))
        pool_ids = [pool] if pool is not None else [p.id for p in desk_cfg.pools]
        for pid in pool_ids:
            if kind is None:
                reports.append(evaluate_pool(desk_cfg, pid, state))
            else:
                spec = desk_cfg.pool(pid).to_domain()
                reports.append(
                    evaluate_portfolio(state, spec, params_for_pool(desk_cfg, pid), model=kind)
                )
    if table:
        for r in reports:
            print_report_table(r)
        return
    if portfolio is not None:
        typer.echo(reports[0].to_json())
    else:
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2))


def register(app: typer.Typer) -> None:
    """Add ``pmr margin`` to the ``pmr`` app."""
    app.command("margin")(margin)
