"""Requests per second through ``CcxtVenue`` over the simulated exchange, in-process and over
loopback HTTP (the same adapter and the same real ccxt in both).

Workload per round, on the example desk's ``sim-a`` (a Portfolio Margin account): spot
balances, PM balances, UM positions, UM marks and one spot→margin transfer: five signed or
public Binance requests through ccxt's full request path (signing, JSON parsing, error handling)
and our limiter, translator and parsers. The simulated clock is a ``ManualClock`` (the limiter's
waits cost no wall time); timings are wall-clock ``perf_counter``.

Usage: ``uv run python benchmarks/venue.py [--rounds N]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from decimal import Decimal
from typing import Literal

from core.clock import ManualClock
from core.config import load_desk
from core.domain import Asset, WalletKind
from core.venues.factory import build_desk_venues
from flows.cli_common import EXAMPLE_DESK


def run(transport: Literal["inprocess", "http"], rounds: int) -> dict[str, float]:
    desk = load_desk(EXAMPLE_DESK)
    clock = ManualClock()
    with build_desk_venues(desk, clock, transport=transport) as dv:
        venue = dv.venues["sim-a"]
        venue.warm_up()
        venue.positions(WalletKind.UM)  # ccxt loads leverage brackets once
        start_requests = venue.http_requests
        t0 = time.perf_counter()
        for i in range(rounds):
            venue.balances(WalletKind.SPOT)
            venue.balances(WalletKind.MARGIN)
            venue.positions(WalletKind.UM)
            venue.mark_prices(WalletKind.UM)
            venue.transfer(
                Asset("USDT"),
                Decimal("1.5"),
                WalletKind.SPOT,
                WalletKind.MARGIN,
                f"b{i}",
                ts_deadline_ns=None,
            )
        elapsed = time.perf_counter() - t0
        n = venue.http_requests - start_requests
    return {
        "requests": n,
        "seconds": round(elapsed, 4),
        "requests_per_s": round(n / elapsed, 1),
        "ms_per_request": round(1000 * elapsed / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    results = {t: run(t, args.rounds) for t in ("inprocess", "http")}
    for t, r in results.items():
        print(
            f"{t:9s} {r['requests']:5d} requests in {r['seconds']:.3f} s: "
            f"{r['requests_per_s']:8.1f} req/s ({r['ms_per_request']:.3f} ms/request)"
        )
    print(
        json.dumps(
            {
                "benchmark": "venue_adapter_requests",
                "rounds": args.rounds,
                "inprocess": results["inprocess"],
                "http": results["http"],
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
