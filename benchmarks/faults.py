"""Fault campaign: ≥ 1,000 seeded faults injected into margin calls on the simulator.

Each trial (``core.execution.drill.run_trial``) shocks the example desk, raises and plans its
margin calls, injects random faults (timeouts applied / not applied / late, garbled, HTML and
id-less 200s, 429, 418, server errors, insufficient funds, halted wallet pairs, clock skew),
crashes the executor in ~30 % of trials (before a send, or after the venue applied it), resumes,
and judges: duplicates, lost, unresolved, reconciliation drifts, audit chain. Trials run in
worker processes (independent seeds), so the figures are the same for any ``--workers``.

Run: ``uv run python benchmarks/faults.py [--faults 1000] [--seed 1] [--workers 2]``.
The last line is one JSON object: ``faults_injected``, ``duplicates``, ``lost``, ``unresolved``
(all three must be 0), ``drifts``, ``chain_failures``, ``legs``, leg latency p50/p99 (ms, as
recorded by the executor: request to answer, lookups included), trials, crashes, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import load_desk  # noqa: E402
from core.execution.drill import CampaignResult, TrialResult, run_trial  # noqa: E402
from core.routing import Router  # noqa: E402

DESK = ROOT / "examples" / "desk.toml"


_WORKER: dict[str, Any] = {}


def _trial(seed: int) -> TrialResult:
    # Each worker process keeps its desk and its router across trials, as a service would.
    if not _WORKER:
        _WORKER.update(desk=load_desk(DESK), router=Router())
    return run_trial(_WORKER["desk"], seed, router=_WORKER["router"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faults", type=int, default=1000, help="stop once this many were served")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    t0 = time.perf_counter()
    trials: list[TrialResult] = []
    served = 0
    next_seed = args.seed
    batch = max(4, 4 * args.workers)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        while served < args.faults:
            seeds = list(range(next_seed, next_seed + batch))
            next_seed += batch
            for t in pool.map(_trial, seeds):
                trials.append(t)
                served += t.faults_injected
                if not t.clean:
                    print(f"seed {t.seed}: NOT CLEAN", *t.notes[-20:], sep="\n  ", file=sys.stderr)
            print(f"{len(trials)} trials, {served} faults", file=sys.stderr)
    summary = CampaignResult(trials, time.perf_counter() - t0).summary()
    summary["workers"] = args.workers
    summary["first_seed"] = args.seed
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
