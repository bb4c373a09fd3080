"""The long-lived monitor: 10,000 cycles in one process, cycle time and resident memory.

The monitor flow runs ``core.execution.monitor.monitor_cycle`` every 15 s all day, in one
process, so a cycle must stay fast and memory must stay flat. This runs that same call on the
example desk's simulated venues (in-process, a manual clock) and an in-memory SQLite store,
without Prefect (the flow adds nothing per cycle but a ``time.sleep``). Before each cycle the
clock moves on by ``--period`` (15 s, the served monitor's period), as the flow's ``catch_up``
does against the wall clock, so the simulated markets move and the venues' rate-limit windows
roll as they would; nothing sleeps.

Untimed set-up: the venues warmed up and ``--warm-up`` cycles (imports, caches, the first
reads). Then every cycle is timed (``perf_counter`` around ``monitor_cycle``), and every
``--sample-every`` cycles the resident set size (``/proc/self/statm``) and the number of live
Python allocations (``sys.getallocatedblocks``, which ignores allocator slack) are sampled,
each after a ``gc.collect()`` so cyclic garbage awaiting collection is not read as growth.

Run: ``uv run python benchmarks/monitor.py [--cycles 10000] [--sample-every 1000]``. The last
line is one JSON object: cycles, cycle p50/p99/max (ms), RSS at the start and the end and the
series (MiB), the allocation series, the cycles that found a call due or refused prices.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.clock import ManualClock  # noqa: E402
from core.config import load_desk  # noqa: E402
from core.execution.cure import DeskCure  # noqa: E402
from core.execution.monitor import monitor_cycle  # noqa: E402
from core.ledger.store import init_db, make_engine  # noqa: E402
from core.venues.factory import build_desk_venues  # noqa: E402

DESK = ROOT / "examples" / "desk.toml"
T0_NS = 1_795_780_800_000_000_000  # 2026-11-27 12:00 UTC
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mib() -> float:
    """Resident set size now (``/proc/self/statm``, second field, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_MIB


def _sample() -> tuple[float, int]:
    gc.collect()
    return round(_rss_mib(), 1), sys.getallocatedblocks()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--sample-every", type=int, default=1_000)
    parser.add_argument("--period", type=float, default=15.0, help="simulated seconds")
    parser.add_argument("--warm-up", type=int, default=20)
    args = parser.parse_args()
    if args.cycles < 1 or args.sample_every < 1 or args.period <= 0 or args.warm_up < 0:
        parser.error("--cycles and --sample-every must be >= 1, --period > 0, --warm-up >= 0")
    desk = load_desk(DESK)
    clock = ManualClock(T0_NS)
    engine = make_engine("sqlite://")  # the store: pools escalated recently are held back
    init_db(engine)
    times_ms: list[float] = []
    rss: list[float] = []
    blocks: list[int] = []
    due = refused = 0
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        cure = DeskCure(desk, dv.venues, clock, engine=engine)
        for _ in range(args.warm_up):
            clock.advance(args.period)
            monitor_cycle(cure, engine=engine)
        r, b = _sample()
        rss.append(r)
        blocks.append(b)
        started = time.perf_counter()
        for n in range(1, args.cycles + 1):
            clock.advance(args.period)
            t0 = time.perf_counter()
            cycle = monitor_cycle(cure, engine=engine)
            times_ms.append((time.perf_counter() - t0) * 1e3)
            due += bool(cycle.due)
            refused += cycle.refused is not None
            if n % args.sample_every == 0 or n == args.cycles:
                r, b = _sample()
                rss.append(r)
                blocks.append(b)
                print(f"cycle {n}: rss {r} MiB, {b} live allocations", file=sys.stderr)
        wall_s = time.perf_counter() - started
    engine.dispose()
    summary = {
        "cycles": args.cycles,
        "period_s": args.period,
        "cycle_p50_ms": round(statistics.median(times_ms), 1),
        "cycle_p99_ms": round(_pct(times_ms, 0.99), 1),
        "cycle_max_ms": round(max(times_ms), 1),
        "rss_start_mib": rss[0],
        "rss_end_mib": rss[-1],
        "rss_growth_mib": round(rss[-1] - rss[0], 1),
        "rss_mib_every": args.sample_every,
        "rss_mib": rss,
        "live_allocations": blocks,
        "cycles_with_call_due": due,
        "cycles_refused": refused,
        "wall_s": round(wall_s, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
