"""Benchmark stress testing at desk scale (issue 15). Prints figures, never pass/fail.

A synthetic desk of N pools is built from ``examples/desk.toml``: the example's two venues and
three pools (``unified``, ``standard``, ``scenario``) are copied N/3 times onto venues
``sim-a-<k>`` / ``sim-b-<k>``, each copy with its own routes, swaps, pre-authorisations and
withdrawal addresses, and with its balances and position sizes drawn independently
(collateral × U(1.0, 3.0), positions × U(0.5, 1.5), seeded) so pools differ in health. Scenarios:
the library's venue-independent scenarios (joint and historical), the de-peg and venue scenarios
of the first copy's venues, and a joint grid (BTC moves × IV changes) up to 100 in all. Monte
Carlo: 10,000 one-day t-copula paths.

Stages, timed separately:

- ``margin``: ``compile_desk`` + ``fast_margin`` of every pool in every scenario (ratio, equity,
  MM, deficit, worst position): the fast table;
- ``monte_carlo``: ``pool_monte_carlo_fast`` (draws included);
- ``cover``: ``stress_rows``, what ``evaluate_fast`` does after the table: every pool ×
  scenario in deficit (fast deficit above −1 cent) re-evaluated exactly on its shocked venue
  component, with time-to-cover at 10 s, 60 s and 10 min (``core.stress.cover.CoverSolver``:
  the router's figures, certified without a solve where provable), and the fast figures for
  every other row. Every deficit row, none extrapolated; the solver's counts say how each
  deadline was answered. Each stage has its own ``CoverSolver`` (an empty memo) on one dry-run
  router shared by all (its problems, built once per pool shape, stay warm, as in a service).

Workers: the evaluation is a pure function of the scenario batch (any split gives the same
rows, tested), so with ``--workers 2`` the cover stage runs batches of scenarios in two worker
processes (``concurrent.futures.ProcessPoolExecutor``, forked after the fast table so the
compiled desk and the table are inherited, not copied through pickles), each with a copy of the
stage's ``CoverSolver``; the rows come back in scenario order. The default, ``--workers 1``,
runs it in this process: on this 2-core machine a second worker pays only while the other core
is idle (two busy cores each run slower, and another session's process takes one). The
product's flow fans batches out through Prefect instead.

Scaling: every stage at 1×, 2× and 4× (N/4, N/2, N pools). Wall seconds, and for the cover
and Monte Carlo stages the CPU seconds too (all threads, and with workers this process's plus
theirs; on a machine shared with other work the wall time also counts what they took). Peak
memory is the maximum RSS (``resource.getrusage``) of this process after everything plus, with
workers, the largest sum of the workers' maximum RSS in one stage (an upper bound: forked
workers share their parent's pages until they write them).

Run: ``uv run python benchmarks/stress.py [--pools 1000] [--scenarios 100] [--paths 10000]
[--workers 1]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.config import DeskConfig, parse_desk
from core.domain import Portfolio
from core.stress.cover import CoverSolver
from core.stress.evaluate import PoolStress
from core.stress.fast import (
    FastDesk,
    FastMargin,
    compile_desk,
    fast_margin,
    moves_from_scenarios,
    pool_monte_carlo_fast,
    stress_rows,
)
from core.stress.scenarios import Scenario, joint_scenario, library

if TYPE_CHECKING:
    from core.routing.router import Router

_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "desk.toml"
_AT = datetime(2026, 11, 27, tzinfo=UTC)
_VENUES = ("sim-a", "sim-b")


def _rename(x: Any, names: dict[str, str]) -> Any:
    """Every string equal to a venue, pool, route, swap, group or address name, renamed."""
    if isinstance(x, dict):
        return {names.get(k, k): _rename(v, names) for k, v in x.items()}
    if isinstance(x, list):
        return [_rename(v, names) for v in x]
    if isinstance(x, str):
        return names.get(x, x)
    return x


def synthetic_desk(n_pools: int, seed: int = 7) -> DeskConfig:
    """``n_pools`` (rounded up to a multiple of 3) pools copied from the example desk."""
    base = tomllib.loads(_EXAMPLE.read_text())
    rng = np.random.default_rng(seed)
    copies = -(-n_pools // 3)
    per_copy = ("venues", "pools", "balances", "positions", "routes", "swaps",
                "withdraw_addresses", "preauth")  # fmt: skip
    out = {k: v for k, v in base.items() if k not in per_copy}
    for k in per_copy:
        out[k] = []
    out["preauth_groups"] = {}
    out["preauth_venues"] = {}
    ids = [r["id"] for r in base.get("routes", [])] + [s["id"] for s in base.get("swaps", [])]
    labels = [w["label"] for w in base.get("withdraw_addresses", [])]
    groups = list(base.get("preauth_groups", {}))
    pools = [p["id"] for p in base["pools"]]
    for c in range(copies):
        names = {v: f"{v}-{c}" for v in _VENUES}
        names |= {i: f"{i}-c{c}" for i in (*ids, *labels, *groups, *pools)}
        part = _rename({k: base.get(k, []) for k in per_copy}, names)
        cash_x, size_x = rng.uniform(1.0, 3.0), rng.uniform(0.5, 1.5)
        for b in part["balances"]:
            b["amount"] = str(round(float(b["amount"]) * cash_x, 8))
        for p in part["positions"]:
            p["qty"] = str(round(float(p["qty"]) * size_x, 3))
        for w in part["withdraw_addresses"]:
            w["address"] = "0x" + f"{c:04x}" + w["address"][6:]
        for k in per_copy:
            out[k] += part[k]
        out["preauth_groups"] |= _rename(base.get("preauth_groups", {}), names)
        out["preauth_venues"] |= _rename(base.get("preauth_venues", {}), names)
    return parse_desk(out, source=f"synthetic:{copies * 3}")


def scenario_set(desk: DeskConfig, n: int) -> list[Scenario]:
    """The library's scenarios for the first copy's venues, then a joint grid, ``n`` in all."""
    stables = [a for a, c in desk.assets.items() if c.kind == "stablecoin"]
    lib = library(venues=[f"{v}-0" for v in _VENUES], assets=list(desk.assets),
                  stablecoins=stables)  # fmt: skip
    out = list(lib.values())[:n]
    moves = np.linspace(-0.6, 0.4, 21)
    vols = (0.0, 0.25, 0.5, 1.0, 1.5)
    for m in moves:
        for v in vols:
            if len(out) >= n:
                return out
            if abs(m) < 1e-9:
                continue
            s = joint_scenario(
                float(m), vol_up_frac=v, assets=list(desk.assets), stablecoins=stables
            )
            if s.name not in {x.name for x in out}:
                out.append(s)
    return out


_CPU: dict[str, float] = {}  # CPU seconds of the process (all threads) per timed stage


def _timed(fn: Any, name: str = "") -> tuple[float, Any]:
    """Wall seconds of ``fn()`` (and its CPU seconds in ``_CPU[name]``: on a shared machine the
    wall time also counts what other processes took from this one)."""
    t, c = time.perf_counter(), time.process_time()
    r = fn()
    if name:
        _CPU[name] = time.process_time() - c
    return time.perf_counter() - t, r


_STATS = ("full", "none", "routed", "memo")
# What a forked worker of the cover stage reads: set before the pool forks, inherited.
_JOB: tuple[DeskConfig, Portfolio, list[Scenario], FastDesk, FastMargin, CoverSolver] | None = None


def _stats(cover: CoverSolver) -> tuple[int, ...]:
    return tuple(getattr(cover.stats, k) for k in _STATS)


def _columns(res: FastMargin, lo: int, hi: int) -> FastMargin:
    """The fast table's columns ``lo:hi`` (one batch of scenarios)."""
    cut = {k: getattr(res, k)[:, lo:hi] for k in FastMargin.__dataclass_fields__ if k != "worst"}
    worst = None if res.worst is None else [w[lo:hi] for w in res.worst]
    return replace(res, **cut, worst=worst)


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished (waited-for) children, all of their lives."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cover_batch(lo: int, hi: int) -> dict[str, Any]:
    """``stress_rows`` of scenarios ``lo:hi`` in a worker: its rows, answers and RSS."""
    if _JOB is None:
        raise RuntimeError("no job: the worker was not forked from the stage")
    desk, state, scen, fd, res, cover = _JOB
    before = _stats(cover)
    rows = stress_rows(desk, state, scen[lo:hi], fd, _columns(res, lo, hi), cover=cover)
    return {
        "rows": rows,
        "answered": [b - a for a, b in zip(before, _stats(cover), strict=True)],
        "pid": os.getpid(),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cover_stage(
    desk: DeskConfig,
    state: Portfolio,
    scen: list[Scenario],
    fd: FastDesk,
    res: FastMargin,
    cover: CoverSolver,
    workers: int,
) -> tuple[list[PoolStress], float, float, list[int], float]:
    """The rows, CPU seconds (all processes, and this one's), deadlines answered and the
    workers' summed peak RSS (MiB). The workers' CPU is what the OS counted for them from fork
    to exit: their share of the rows, pickling them back, and starting up."""
    c, children, before = time.process_time(), _children_cpu_s(), _stats(cover)
    if workers <= 1:
        rows = stress_rows(desk, state, scen, fd, res, cover=cover)
        answered = [b - a for a, b in zip(before, _stats(cover), strict=True)]
        own = time.process_time() - c
        return rows, own, own, answered, 0.0
    global _JOB
    _JOB = (desk, state, scen, fd, res, cover)
    # small batches balance the workers (deficits cluster in the crash scenarios)
    size = max(1, -(-len(scen) // (4 * workers)))
    batches = [(lo, min(len(scen), lo + size)) for lo in range(0, len(scen), size)]
    fork = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=fork) as pool:
            parts = list(pool.map(_cover_batch, *zip(*batches, strict=True)))
    finally:
        _JOB = None
    rows = [r for p in parts for r in p["rows"]]
    answered = [sum(p["answered"][k] for p in parts) for k in range(len(_STATS))]
    peak = {p["pid"]: 0.0 for p in parts}
    for p in parts:
        peak[p["pid"]] = max(peak[p["pid"]], p["max_rss_mib"])
    own = time.process_time() - c
    return rows, own + _children_cpu_s() - children, own, answered, sum(peak.values())


def run_stage(
    n_pools: int, n_scen: int, paths: int, router: Router, workers: int = 1
) -> dict[str, Any]:
    """One stage. Its ``CoverSolver`` is new (an empty memo: the stages' desks share their first
    copies, whose routed rows an earlier stage's memo would answer) on the shared dry-run
    ``router``, warm with the problems built for each pool shape."""
    cover = CoverSolver(router)
    desk = synthetic_desk(n_pools)
    state = desk.initial_portfolio(_AT)
    scen = scenario_set(desk, n_scen)
    t_compile, fd = _timed(lambda: compile_desk(desk, state))
    t_margin, res = _timed(lambda: fast_margin(fd, moves_from_scenarios(fd, scen), worst=True))
    t_cover, (rows, cover_cpu, cover_cpu_main, answered, workers_mib) = _timed(
        lambda: cover_stage(desk, state, scen, fd, res, cover, workers)
    )
    t_mc, _ = _timed(
        lambda: pool_monte_carlo_fast(desk, state, paths=paths, seed=1, fast_desk=fd), "mc"
    )
    return {
        "pools": fd.n_pools,
        "scenarios": len(scen),
        "paths": paths,
        "compile_s": round(t_compile, 3),
        "margin_s": round(t_margin, 3),
        "cover_s": round(t_cover, 3),
        "cover_cpu_s": round(cover_cpu, 3),
        "cover_cpu_main_s": round(cover_cpu_main, 3),
        "monte_carlo_s": round(t_mc, 3),
        "monte_carlo_cpu_s": round(_CPU["mc"], 3),
        "deficit_rows": int((res.gap_usd > -0.01).sum()),
        "covered_rows": sum(1 for r in rows if r.covered_10m_usd > 0),
        "partial_rows": sum(1 for r in rows if 0 < r.uncovered_usd < r.deficit_usd),
        "deadlines_answered": dict(zip(_STATS, answered, strict=True)),
        "workers_peak_rss_mib": round(workers_mib, 1),
    }


def warm_up(scenarios: int, router: Router) -> None:
    """Load and run once what every stage uses, outside the timings: scipy.stats and the first
    numpy paths, the routing modules, cvxpy and HiGHS, and the router's problem for each pool
    shape, as a service that has run before has them: a 30-pool desk's stages route 54 partial
    covers over all 5 shapes (a 3-pool desk's 41 deficit rows are all certified, so the first
    stage imported cvxpy and built the problems inside its timing, and workers forked from an
    unwarmed router each built them again)."""
    run_stage(30, scenarios, 10, router)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", type=int, default=1000)
    ap.add_argument("--scenarios", type=int, default=100)
    ap.add_argument("--paths", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=1, help="processes for the cover stage")
    args = ap.parse_args(argv)
    router = CoverSolver().router  # one dry-run router, as ``evaluate`` builds
    warm_up(args.scenarios, router)
    stages = []
    for frac in (4, 2, 1):
        st = run_stage(args.pools // frac, args.scenarios, args.paths, router, args.workers)
        stages.append(st)
        print(f"{frac}: " + json.dumps(st), file=sys.stderr)
    full = stages[-1]
    table_s = full["compile_s"] + full["margin_s"]
    total_s = table_s + full["cover_s"] + full["monte_carlo_s"]
    ps = full["pools"] * full["scenarios"]
    own_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_rss_mib = max(st["workers_peak_rss_mib"] for st in stages)
    peak_rss_mib = own_rss_mib + workers_rss_mib
    base = stages[0]
    result = {
        "benchmark": "stress",
        "pools": full["pools"],
        "scenarios": full["scenarios"],
        "paths": full["paths"],
        "workers": args.workers,
        "seconds": round(total_s, 3),
        "seconds_margin_table": round(table_s, 3),
        "seconds_cover": full["cover_s"],
        "cpu_seconds_cover": full["cover_cpu_s"],
        "seconds_monte_carlo": full["monte_carlo_s"],
        "cpu_seconds_monte_carlo": full["monte_carlo_cpu_s"],
        "pool_scenarios_per_s": round(ps / (table_s + full["cover_s"])),
        "pool_paths_per_s": round(full["pools"] * full["paths"] / full["monte_carlo_s"]),
        "deficit_rows": full["deficit_rows"],
        "covered_rows": full["covered_rows"],
        "partial_rows": full["partial_rows"],
        "cover_ms_per_deficit_row": round(1e3 * full["cover_s"] / max(1, full["deficit_rows"]), 3),
        "deadlines_answered": full["deadlines_answered"],
        "scaling": [
            {
                "x": round(st["pools"] / base["pools"], 2),
                "pools": st["pools"],
                "seconds": round(
                    st["compile_s"] + st["margin_s"] + st["cover_s"] + st["monte_carlo_s"], 3
                ),
                "margin_s": round(st["compile_s"] + st["margin_s"], 3),
                "cover_s": st["cover_s"],
                "cover_cpu_s": st["cover_cpu_s"],
                "monte_carlo_s": st["monte_carlo_s"],
                "deficit_rows": st["deficit_rows"],
            }
            for st in stages
        ],
        "peak_rss_mib": round(peak_rss_mib, 1),
        "peak_rss_mib_parts": {"main": round(own_rss_mib, 1), "workers": workers_rss_mib},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "targets": {"seconds_le": 60, "peak_rss_mib_le": 2048},
    }
    print(
        f"total {total_s:.1f} s (table {table_s:.1f}, cover {full['cover_s']:.1f}, Monte Carlo "
        f"{full['monte_carlo_s']:.1f}), peak memory {peak_rss_mib:,.0f} MiB, "
        f"load average {result['load_average'][0]}",
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
