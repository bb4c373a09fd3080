"""Breach detected → first transfer sent, in-process on the simulator (target p50 ≤ 250 ms).

Each run builds the example desk's simulated venues on a manual clock, moves their prices by
the shock (ETH −26 %, BTC +8 %) and starts an in-memory SQLite store shared by all calls, as a
service keeps one (all untimed). A monitor tick reads every venue and margins every pool
(``detect_by_pool``, timed as ``tick``): the breach is detected when it returns. From there
the clock runs, on the wall clock: recording the call (``open_call``), planning and recording version 1
(``plan_call``), and the executor up to the moment the first leg's request returned from the
venue (gate, intent, claim, attempt, send). The rest of the run (verify) is not timed.

As in a running monitor, one ``DeskCure`` (so one router, which keeps the problems it built)
serves every call; the first run warms imports, caches and that router and is left out.

Run: ``uv run python benchmarks/margin_call.py [--calls 20] [--pool sim-b.opt] [--profile]``.
``--profile`` prints the top functions of one extra run (cumulative time) on stderr. The last
line is one JSON object: calls, p50/p95/max of breach → first send (ms), p50 of each phase and
of the tick, target.

**Through the event trigger** (``--trigger``, target p50 ≤ 3 s over ≥ 5 calls): the pieces a
desk runs. ``pmr serve --only pmr-margin-call`` in its own process group (the store, one
shared simulator over HTTP, a local Prefect server, the bootstrap, the trigger-driven
deployment served with a 1 s runner poll), its Prefect server on **PostgreSQL** (a fresh
database ``pmr_bench_prefect``, created before and dropped after: DESIGN §9, sub-second polling
on SQLite stalls run creation). This process is the long-lived monitor: per call it shocks the
shared simulator (``SimControl.shock``) so a pool breaches, runs the ``monitor`` flow once
with ``fast_path=False`` (it records the call and emits ``pmr.margin.call``, and cures
nothing), and waits until the store says the call is closed. Then, from the store and the
Prefect API, on the one wall clock of this host:

- ``t0``: the call's ``raised_at`` (recorded just before the event is emitted);
- ``event``: the event's ``occurred`` (emitted) and ``received`` (ingested by the server);
- ``created``: the triggered flow run's creation (the automation's action);
- ``pending``: the runner took it (its poll) and starts a fresh interpreter;
- ``running``: that interpreter reached the flow (imports, settings, the flow engine);
- ``plan``: the run's ``PlanMade`` audit event (state loaded, routed, persisted);
- ``t1``: the first leg's ``sent_at`` (recorded as the request leaves), the figure reported.

The first cycle's call is a warm-up, left out. Two pools can fall due in one cycle: both
calls are measured, their runs started together. Bytecode must be compiled (``.ci/run`` does; ``uv sync
--compile-bytecode`` and ``python -m compileall core flows deployments``): the JSON says
whether it is. Run: ``uv run python benchmarks/margin_call.py --trigger [--calls 6]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine  # noqa: E402

from core.clock import ManualClock  # noqa: E402
from core.config import DeskConfig, load_desk  # noqa: E402
from core.execution.cure import DeskCure, check_plan_against_desk  # noqa: E402
from core.execution.executor import Executor  # noqa: E402
from core.execution.gate import desk_gate  # noqa: E402
from core.execution.margin_call import detect_by_pool, open_call, plan_call  # noqa: E402
from core.ledger.store import init_db, make_engine  # noqa: E402
from core.routing import Router  # noqa: E402
from core.venues.factory import build_desk_venues  # noqa: E402

DESK = ROOT / "examples" / "desk.toml"
SHOCK = {"ETH": -0.26, "BTC": 0.08}
T0_NS = 1_795_780_800_000_000_000  # 2026-11-27 12:00 UTC
TARGET_MS = 250.0
DAY_AND_HOUR_NS = 25 * 3600 * 10**9


def _one(
    desk: DeskConfig,
    pool: str,
    engine: Engine,
    router: Router,
    run: int,
    prof: cProfile.Profile | None = None,
) -> dict[str, float]:
    clock = ManualClock(T0_NS + run * DAY_AND_HOUR_NS)  # rolling 24 h caps: each call fresh
    marks: dict[str, float] = {}
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for e in dv.engines.values():
            e.prices.apply_scenario(SHOCK)
        cure = DeskCure(desk, dv.venues, clock, engine=engine, router=router)

        def on_step(line: str) -> None:
            if "first" not in marks and line.startswith("leg ") and " sent" in line:
                marks["first"] = time.perf_counter()

        ex = Executor(
            engine, dv.venues, clock, owner="bench", gate=desk_gate(desk),
            verifier=cure.verify, replanner=cure.replan,
            plan_check=lambda r: check_plan_against_desk(desk, r), on_step=on_step,
        )  # fmt: skip
        if prof is not None:
            prof.enable()
        t0 = time.perf_counter()
        reports, portfolios, due = detect_by_pool(cure)
        t1 = time.perf_counter()
        d = next(x for x in due if x.pool_id == pool)
        call, _ = open_call(engine, cure, d, clock=clock, audit_key=None)
        t2 = time.perf_counter()
        plan_call(engine, cure, call, reports, portfolios[pool], clock=clock, audit_key=None)
        t3 = time.perf_counter()
        report = ex.execute(call.id)
        if prof is not None:
            prof.disable()
        if "first" not in marks or report.call_status != "cured":
            raise SystemExit(f"run did not send and cure: {report}")
    return {
        "total": (marks["first"] - t1) * 1e3,
        "tick": (t1 - t0) * 1e3,
        "open_call": (t2 - t1) * 1e3,
        "plan_call": (t3 - t2) * 1e3,
        "execute_to_send": (marks["first"] - t3) * 1e3,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=None, help="in-process 20, --trigger 6")
    parser.add_argument("--pool", default="sim-b.opt")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--trigger", action="store_true", help="through pmr serve's trigger")
    args = parser.parse_args()
    if args.trigger:
        from margin_call_trigger import run_trigger

        print(json.dumps(run_trigger(args.calls or 6)))
        return
    args.calls = args.calls or 20
    desk = load_desk(DESK)
    # One store for every call, as a running service keeps one engine (its statement cache
    # warm); each call runs a day and an hour after the previous one, outside its rolling caps.
    engine = make_engine("sqlite://")
    init_db(engine)
    router = Router()  # the monitor's one router (it keeps the problems it built)
    _one(desk, args.pool, engine, router, 0)  # warm-up: imports, solver set-up, caches
    runs = [_one(desk, args.pool, engine, router, i + 1) for i in range(args.calls)]
    totals = [r["total"] for r in runs]
    if args.profile:
        prof = cProfile.Profile()
        _one(desk, args.pool, engine, router, args.calls + 1, prof)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(35)
        print(buf.getvalue(), file=sys.stderr)
    summary = {
        "calls": len(runs),
        "pool": args.pool,
        "p50_ms": round(statistics.median(totals), 1),
        "p95_ms": round(_pct(totals, 0.95), 1),
        "max_ms": round(max(totals), 1),
        "phase_p50_ms": {
            k: round(statistics.median(r[k] for r in runs), 1)
            for k in ("open_call", "plan_call", "execute_to_send", "tick")
        },
        "target_p50_ms": TARGET_MS,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
