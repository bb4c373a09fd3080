"""``pmr stress``: the desk under the scenario library, with time-to-cover and Monte Carlo.

Orchestration only: scenarios, evaluation and the report are ``core.stress``. Without
``--scenario`` every named scenario runs (``--all`` says so explicitly). ``--paths N`` adds a
Monte Carlo of N one-day paths (ratio quantiles and breach probabilities per pool).
``--engine`` picks the exact path or ``core.stress.fast`` (``auto``: fast for large runs).
``--out DIR`` writes ``results.csv``, ``summary.md`` and the charts; ``--record`` stores one
``stress_result`` row per pool × scenario in the store (``PMR_DATABASE_URL`` or ``--db``).

Examples
--------
::

    $ pmr stress --desk examples/desk.toml --scenario joint-btc-30%-vol+50%
    $ pmr stress --desk examples/desk.toml --all --format md --out /tmp/stress
    $ pmr stress --desk examples/desk.toml --scenario hist-2025-10-10-24h --paths 500 --seed 7
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import ConfigError, DataError
from flows.cli_audit import (
    DEFAULT_KEY_ENV,
    KeyBlockOption,
    KeyEnvOption,
    UnkeyedOption,
    UrlOption,
)
from flows.cli_common import (
    AsOfOption,
    as_of_or_now,
    err_console,
    handles_pmr_errors,
    out,
    parse_as_of,
    refuse_option,
)

if TYPE_CHECKING:
    import polars as pl

    from core.stress.montecarlo import PoolMonteCarlo

__all__ = ["register", "stress"]

_FORMATS = ("table", "json", "md")
_ENGINES = ("auto", "exact", "fast")
# ``--engine auto`` switches to the fast path from this many pool evaluations (pools × (scenarios
# + paths)): about 15 s exact. Below it the exact path costs little and prints the reference.
_FAST_FROM = 10_000


def _table(df: pl.DataFrame, mc: list[PoolMonteCarlo]) -> None:
    from rich.table import Table

    t = Table(
        title=f"stress: {df['pool'].n_unique()} pools × {df['scenario'].n_unique()} scenarios"
    )
    for name, justify in (
        ("pool", "left"), ("scenario", "left"), ("ratio", "right"), ("desk level", "left"),
        ("deficit", "right"), ("≤10 s", "right"), ("≤60 s", "right"), ("≤10 min", "right"),
        ("uncovered", "right"), ("flag", "left"),
    ):  # fmt: skip
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in df.iter_rows(named=True):
        flag = "LIQUIDATED FIRST" if r["liquidation_before_cover"] else ""
        if r["stale_prices"]:
            flag = "stale prices"
        t.add_row(
            r["pool"],
            r["scenario"],
            "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
            r["desk_level"],
            *(
                f"{r[c]:,.0f}"
                for c in ("deficit", "covered_10s", "covered_60s", "covered_10m", "uncovered")
            ),
            flag,
        )
    out.print(t)
    if mc:
        m = Table(title=f"Monte Carlo: {mc[0].ratios.size:,} one-day paths")
        for name in (
            "pool",
            "ratio p1",
            "ratio p5",
            "ratio p50",
            "P(call)",
            "P(liquidation)",
            "ES99 deficit",
        ):
            m.add_column(name, justify="left" if name == "pool" else "right")
        for x in mc:
            q = x.quantiles
            m.add_row(
                x.pool_id,
                *(f"{q[k]:.3f}" if k in q else "-" for k in ("p1", "p5", "p50")),
                f"{x.p_call:.2%}",
                f"{x.p_liquidation:.2%}",
                f"{x.es99_deficit_usd:,.0f}",
            )
        out.print(m)


def _mc_json(mc: list[PoolMonteCarlo]) -> list[dict[str, Any]]:
    return [
        {
            "pool": x.pool_id,
            "paths": int(x.ratios.size),
            "ratio_quantiles": x.quantiles,
            "p_call": x.p_call,
            "p_liquidation": x.p_liquidation,
            "es99_deficit_usd": round(x.es99_deficit_usd, 2),
        }
        for x in mc
    ]


def stress(
    desk: Annotated[Path, typer.Option(help="Desk configuration (TOML).")],
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="A scenario name (repeatable); see --list. Default: all."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every named scenario (the default).")
    ] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="List the scenario names and stop.")
    ] = False,
    paths: Annotated[int, typer.Option(help="Monte Carlo one-day paths (0: none).")] = 0,
    seed: Annotated[int, typer.Option(help="Monte Carlo seed.")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="table, json or md.")] = "table",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write results.csv, summary.md and charts here.")
    ] = None,
    record: Annotated[bool, typer.Option(help="Store the results (stress_result rows).")] = False,
    db: Annotated[str | None, typer.Option(help="Store URL (default: PMR_DATABASE_URL).")] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="exact, fast, or auto: fast once pools × (scenarios + paths) reaches "
            f"{_FAST_FROM:,} (see docs/stress.md, Performance)."
        ),
    ] = "auto",
    as_of: AsOfOption = None,
) -> None:
    """Stress-test the desk: post-shock margin, time-to-cover, Monte Carlo."""
    from core.config import load_desk
    from core.stress.scenarios import library

    if engine not in _ENGINES:
        raise ConfigError("--engine must be one of " + ", ".join(_ENGINES), value=engine)
    if fmt not in _FORMATS:
        raise ConfigError("--format must be one of " + ", ".join(_FORMATS), value=fmt)
    if paths < 0:
        raise DataError("--paths must be ≥ 0", value=paths)
    if scenario and all_:
        raise ConfigError("--scenario and --all mean different things; give one")
    cfg = load_desk(desk)
    stables = [a for a, c in cfg.assets.items() if c.kind == "stablecoin"]
    lib = library(venues=[v.name for v in cfg.venues], assets=list(cfg.assets), stablecoins=stables)
    if list_:
        for s in lib.values():
            out.print(f"{s.name:<40} {s.kind.value:<11} {s.title}", highlight=False, markup=False)
        return
    names = list(scenario or lib)
    unknown = [n for n in names if n not in lib]
    if unknown:
        raise DataError("unknown scenario (see `pmr stress --list`)", scenario=", ".join(unknown))
    at = as_of_or_now(parse_as_of(as_of))
    state = cfg.initial_portfolio(at)
    fast = engine == "fast" or (
        engine == "auto" and len(cfg.pools) * (len(names) + paths) >= _FAST_FROM
    )
    rows, mc = _run(cfg, state, [lib[n] for n in names], paths=paths, seed=seed, fast=fast)
    from core.stress.report import frame, markdown_summary

    df = frame(rows, lib)
    if record:
        _record(db, rows, lib, cfg, at)
    if out_dir is not None:
        _write(out_dir, df, markdown_summary(df), mc)
    if fmt == "json":
        payload = {"results": json.loads(df.write_json()), "monte_carlo": _mc_json(mc)}
        print(json.dumps(payload, indent=2))
    elif fmt == "md":
        print(markdown_summary(df), end="")
    else:
        _table(df, mc)


def _run(cfg: Any, state: Any, scenarios: list[Any], *, paths: int, seed: int, fast: bool) -> Any:
    """Evaluate with a progress bar on stderr (only when it is a terminal and the run is long).

    ``fast``: ``core.stress.fast`` (the same rows; float64 figures for pools not in deficit,
    the exact path and router for those in deficit; Monte Carlo on the same draws).
    """
    from rich.progress import Progress

    from core.stress.cover import CoverSolver
    from core.stress.evaluate import evaluate
    from core.stress.montecarlo import pool_monte_carlo

    if fast:
        from core.stress.fast import evaluate_fast, pool_monte_carlo_fast

        rows = evaluate_fast(cfg, state, scenarios)
        mc = pool_monte_carlo_fast(cfg, state, paths=paths, seed=seed) if paths else []
        return rows, mc

    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("scenarios", total=len(scenarios))
        rows = []
        cover = CoverSolver()  # one dry-run router for every scenario
        for s in scenarios:
            rows += evaluate(cfg, state, [s], cover=cover)
            bar.advance(task)
        mc = []
        if paths:
            mct = bar.add_task("Monte Carlo paths", total=paths)
            mc = pool_monte_carlo(cfg, state, paths=paths, seed=seed,
                                  progress=lambda n: bar.update(mct, completed=n))  # fmt: skip
    return rows, mc


def _record(db: str | None, rows: Any, lib: Any, cfg: Any, at: Any) -> None:
    import uuid

    from core.stress.report import record_stress_results
    from flows.cli_audit import _store_session

    run_id = f"stress-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    with _store_session(db) as (session, where):
        n = record_stress_results(session, run_id, rows, lib, cfg, at=at)
    err_console.print(f"recorded {n} stress results as run {run_id} in {where}", highlight=False)


def _write(out_dir: Path, df: pl.DataFrame, summary: str, mc: list[PoolMonteCarlo]) -> None:
    from core.stress.charts import write_charts

    out_dir.mkdir(parents=True, exist_ok=True)
    df.write_csv(out_dir / "results.csv")
    (out_dir / "summary.md").write_text(summary)
    for path in write_charts(df, mc, out_dir):
        err_console.print(f"wrote {path}", highlight=False)


def prefund(
    desk: Annotated[Path, typer.Option(help="Desk configuration (TOML).")],
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="A scenario to cover (repeatable). Default: every named scenario."),
    ] = None,
    deadline: Annotated[float, typer.Option(help="Seconds: 10, 60 or 600.")] = 60.0,
    carry_bps: Annotated[
        float, typer.Option(help="Cost of idle collateral, basis points per USD pre-positioned.")
    ] = 1.0,
    as_of: AsOfOption = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Execute the advice on the desk's venues (pre-authorised, exactly once, "
            "within the cold-wallet quotas); default: print it only.",
        ),
    ] = False,
    url: UrlOption = None,
    key_env: KeyEnvOption = DEFAULT_KEY_ENV,
    key_block: KeyBlockOption = None,
    unkeyed: UnkeyedOption = False,
) -> None:
    """Recommend what to pre-position where so the scenarios are covered within the deadline.

    With --apply, compute it on what the venues hold now and execute it through the executor
    (each leg printed as it happens, then what was and was not pre-positioned, and the
    scenarios re-run on the venues). Exit 0: done; 1: some moves refused or failed, or legs in
    flight; 2: bad input, nothing sent.
    """
    from core.config import load_desk
    from core.stress.prefund import prefund as advise
    from core.stress.scenarios import library

    if not (carry_bps >= 0):
        raise DataError("--carry-bps must be ≥ 0", value=carry_bps)
    if not apply:
        for option, value in (("--url", url), ("--key-block", key_block), ("--unkeyed", unkeyed)):
            refuse_option(
                option, value or None, because="goes with --apply (a dry run records nothing)"
            )
    cfg = load_desk(desk)
    stables = [a for a, c in cfg.assets.items() if c.kind == "stablecoin"]
    lib = library(venues=[v.name for v in cfg.venues], assets=list(cfg.assets), stablecoins=stables)
    names = list(scenario or lib)
    unknown = [n for n in names if n not in lib]
    if unknown:
        raise DataError("unknown scenario (see `pmr stress --list`)", scenario=", ".join(unknown))
    if deadline not in (10.0, 60.0, 600.0):
        raise DataError(
            "--deadline must be 10, 60 or 600 (the time-to-cover deadlines)", value=deadline
        )
    if apply:
        from flows.audit_key import resolve_audit_key
        from flows.cli_prefund import apply_prefund

        at = parse_as_of(as_of)
        key = resolve_audit_key(
            key_env=key_env, key_block=key_block, unkeyed=unkeyed, required=False
        )
        code = apply_prefund(
            desk, cfg, [lib[n] for n in names], deadline_s=deadline, carry_bps=carry_bps,
            as_of=at, url=url, key=key,
        )  # fmt: skip
        if code:
            raise typer.Exit(code)
        return
    state = cfg.initial_portfolio(as_of_or_now(parse_as_of(as_of)))
    advice = advise(cfg, state, [lib[n] for n in names], deadline_s=deadline, carry_bps=carry_bps)
    for line in advice.lines():
        out.print(line, highlight=False, markup=False)
    out.print(
        f"status: {advice.status}; fees {advice.cost_usd:,.2f} USD; checked by re-running "
        f"{len(names)} scenario(s) on the moved state",
        highlight=False,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``pmr stress`` and ``pmr prefund`` to the ``pmr`` app."""
    app.command("stress")(handles_pmr_errors(stress))
    app.command("prefund")(handles_pmr_errors(prefund))
