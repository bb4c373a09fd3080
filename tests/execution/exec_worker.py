"""One executor process of the multi-process tests (``test_executor_processes.py``).

:func:`run` is the whole life of an executor process: connect to the test's PostgreSQL schema
and to the simulated venues served over loopback HTTP by the test process, then ``execute``
the given margin calls, or ``resume`` what a killed peer left, and write one JSON line per
call and a last summary line to ``args["out"]``. The tests start it through a ``forkserver``
that imported this module once (a fresh interpreter per worker costs ~10 s of imports on a busy
machine), so each worker is a real process that ``kill -9`` ends at any instruction.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import time
from pathlib import Path
from typing import Any

import ccxt
from scaled_clock import ScaledClock
from sqlalchemy import create_engine
from sqlmodel import Session, col, select

from core.config import load_desk
from core.execution.cure import DeskCure, check_plan_against_desk
from core.execution.executor import Executor
from core.execution.ratelimits import StoreRateGate
from core.ledger.store import normalise_url
from core.ledger.tables import TransferRow
from core.ledger.vocab import TransferState
from core.venues.ccxt_plumbing import rewrite_api_urls
from core.venues.ccxt_venue import CcxtVenue


def _say(out: Path, record: dict[str, Any]) -> None:
    with out.open("a") as f:
        f.write(json.dumps(record) + "\n")


def run(args: dict[str, Any]) -> None:
    """Run one executor; exits the process with 0 when every call was driven to its end."""
    faulthandler.dump_traceback_later(90, exit=True)  # a hung worker says where, then exits
    t0 = time.monotonic()
    out = Path(args["out"])
    log = Path(args["out"]).with_suffix(".log").open("a")
    desk = load_desk(args["desk"])
    clock = ScaledClock(*args["clock"])
    engine = create_engine(
        normalise_url(args["url"]), connect_args={"options": f"-csearch_path={args['schema']}"}
    )
    decimals = {a: c.decimals for a, c in desk.assets.items()}
    venues = {}
    for name, v in args["venues"].items():
        ex = ccxt.binance({"apiKey": v["key"], "secret": v["secret"], "enableRateLimit": False})
        rewrite_api_urls(ex, v["url"])
        venue = CcxtVenue(
            name, ex, clock, asset_decimals=decimals,
            weight_limits_per_min=v["limits"], portfolio_margin=v["pm"],
        )  # fmt: skip
        venue.warm_up()
        venues[name] = venue
    cure = DeskCure(desk, venues, clock)
    owner = args["owner"]
    # margin_s: the store counts a booked weight this long past the venue's window. At 30x, a
    # 0.5 s scheduling hiccup between booking and the venue's receipt is 15 s of venue time.
    rate = StoreRateGate(engine, clock, {n: v["limits"] for n, v in args["venues"].items()},
                         owner=owner, margin_s=args.get("margin_s", 15.0))  # fmt: skip

    def step(text: str) -> None:
        log.write(f"{time.monotonic() - t0:6.2f} {owner} {text}\n")
        log.flush()

    executor = Executor(
        engine, venues, clock, owner=owner, rate=rate,
        verifier=cure.verify, replanner=cure.replan,
        plan_check=lambda r: check_plan_against_desk(desk, r), lease_s=args.get("lease_s", 30),
        on_step=step,
    )  # fmt: skip
    _say(out, {"owner": owner, "ready_s": round(time.monotonic() - t0, 2)})
    if args["mode"] == "resume":
        # A fresh process after a crash: finish every leg left behind, then drive every call.
        # A leg still leased by the dead process is taken over once its lease expires.
        for _ in range(args.get("rounds", 8)):
            executor.resume()
            with Session(engine) as s:
                left = s.exec(select(TransferRow.idempotency_key).where(
                    col(TransferRow.status).in_([st.value for st in TransferState if not st.is_final])
                )).all()  # fmt: skip
            if not left:
                break
            clock.sleep(executor.lease_s)
    for call_id in args["calls"]:
        try:
            report = executor.execute(call_id)
        except Exception as exc:  # the peer (or the dead process) closed the call first
            if "is cured" in str(exc) or "is escalated" in str(exc):
                _say(out, {"call": call_id, "status": "closed by another executor"})
                continue
            raise
        _say(out, {"call": call_id, "status": report.call_status})
    _say(out, {"owner": owner, "sends": executor.sends, "rate_waited_s": rate.waited_s,
               "wall_s": round(time.monotonic() - t0, 2)})  # fmt: skip
    engine.dispose()
    log.close()
    sys.stdout.flush()
