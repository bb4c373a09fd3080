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
  budget is cut to one 900-weight transfer per minute and a third executor has just booked a
  whole window in the store; both processes' legs queue on the store's shared window
  (``rate_weight``, which their own limiters never saw) instead of being refused: nothing is
  sent before that booking leaves the window, by the simulator's own log of what it accepted
  no 60 s window ever holds more weight than the limit, and the venue never answered 429 or
  418. (The example desk's calls make 3 to 5 legs, so this storm is a tight budget, not a
  flood of legs.)
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
from pathlib import Path
from typing import Any

import pytest
from scaled_clock import ScaledClock
from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session, select

from core.config import load_desk
from core.execution.cure import DeskCure
from core.execution.drill import applied_movements, confirmed_movements
from core.execution.margin_call import detect, open_call, plan_call
from core.ledger.audit_log import verify_audit_chain
from core.ledger.reconcile import reconcile
from core.ledger.store import init_db, normalise_url, session_scope
from core.ledger.tables import RateWeightRow, TransferRow
from core.ledger.vocab import TransferState
from core.venues.capabilities import BINANCE_LEG_ENDPOINTS
from core.venues.factory import DeskVenues, build_desk_venues
from core.venues.ratelimit import SAPI_UID_FAMILY, budget_family, request_weight
from core.venues.sim.control import SimControl
from core.venues.sim.faults import FaultKind

pytestmark = pytest.mark.postgres

HERE = Path(__file__).resolve().parent
DESK = HERE.parents[1] / "examples" / "desk.toml"
FACTOR = 30.0  # the scaled clock: 30 s of venue time per wall second
TRANSFER = "/sapi/v1/asset/transfer"
SHOCK = {"ETH": -0.26, "BTC": 0.08}


@pytest.fixture(scope="module")
def forkserver() -> Any:
    """A multiprocessing context whose server imported the worker (and the product) once.

    Python 3.11's forkserver ignores the parent's ``sys.path`` when it preloads (its
    ``sys_path`` argument is unused), and a failed preload is silently skipped: every worker
    would then import ccxt, cvxpy and the product itself (~10 s each on a busy machine). The
    server is started here with ``PYTHONPATH`` naming the repository and this directory.
    """
    import multiprocessing.forkserver as fs

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["exec_worker"])
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), str(HERE)]
                                               + ([before] if before else []))  # fmt: skip
    try:
        fs.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
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
        applied, confirmed = applied_movements(self.dv), confirmed_movements(rows)
        assert applied == confirmed  # no duplicate (applied - confirmed), nothing lost
        sent = [r for r in rows if r.status == TransferState.CONFIRMED.value]
        ids = [(r.venue_id, r.venue_transfer_id) for r in sent]
        assert len(set(ids)) == len(ids)  # one venue movement per confirmed leg
        with session_scope(self.engine) as s:
            recon = reconcile(s, load_desk(DESK), self.dv.venues, now=self.clock.now())
            assert not recon.drifts, recon.drifts
        with Session(self.engine) as s:
            assert verify_audit_chain(s).ok
        return rows


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
    driven = {x["call"]: x["status"] for o in outs for x in o if "call" in x}
    assert set(driven) == set(rig.calls)
    print(f"two processes: {len(rows)} legs, {len(sent)} confirmed, sends {sends}, "
          f"{time.monotonic() - t0:.1f} s")  # fmt: skip


def _max_window_weight(rig: Rig, venue: str, family: str) -> tuple[int, int]:
    """(largest weight the venue accepted in any 60 s window of its time, requests counted)."""
    took = [
        (x.at_ns, request_weight(x.method, x.path))
        for x in rig.seen
        if x.venue == venue and x.status not in (429, 418)
        and budget_family(x.method, x.path) == family
    ]  # fmt: skip
    worst = 0
    for t_i, _ in took:
        worst = max(worst, sum(w for t, w in took if t_i - 60_000_000_000 < t <= t_i))
    return worst, len(took)


def test_rate_storm_from_two_processes_queues_under_the_venue_window(rig: Rig) -> None:
    t0 = time.monotonic()
    limit = 900  # one 900-weight transfer per venue per minute: every second one must queue
    for e in rig.dv.engines.values():
        e.config.weight_limits_per_min[SAPI_UID_FAMILY] = limit  # type: ignore[index]
    # A third executor of the desk has just booked a whole window on every venue: both
    # processes' first transfers must queue behind it, on the store's shared window alone
    # (their own in-process limiters have never seen it).
    booked_ns = rig.clock.timestamp_ns()
    with Session(rig.engine) as s:
        for venue in rig.dv.engines:
            s.add(RateWeightRow(venue_id=venue, family=SAPI_UID_FAMILY, ts_ns=booked_ns,
                                weight=limit, owner="peer"))  # fmt: skip
        s.commit()
    a = rig.start("storm-0")
    b = rig.start("storm-1", calls=rig.calls[::-1])
    outs = rig.finish(a, b)
    rows = rig.judge()
    assert not [x for x in rig.seen if x.status in (429, 418)]  # queued, never refused
    total = 0
    for venue in rig.dv.engines:
        worst, n = _max_window_weight(rig, venue, SAPI_UID_FAMILY)
        assert worst <= limit, (venue, worst)
        total += n
    transfers = _sent_to_venue(rig)
    assert len(transfers) >= 2
    # nothing went out before the peer's booking left the window (60 s + the store's margin)
    assert min(x.at_ns for x in transfers) >= booked_ns + 60_000_000_000
    waited = sum(o[-1]["rate_waited_s"] for o in outs)
    assert waited > 0  # the workers started some 15 s (venue time) after the booking
    by_venue = Counter(x.venue for x in transfers)
    print(f"storm: {len(rows)} legs, {len(transfers)} transfers {dict(by_venue)}, "
          f"{total} uid-weighted requests, store waits {waited:.0f} s venue time, "
          f"{time.monotonic() - t0:.1f} s")  # fmt: skip


def test_ban_written_by_one_process_is_honoured_by_the_other(rig: Rig) -> None:
    t0 = time.monotonic()
    venue = "sim-a"
    pm = rig.dv.engines[venue].config.portfolio_margin
    method, path = BINANCE_LEG_ENDPOINTS[("margin_order", pm)]
    ctl = rig.control()
    ctl.inject(venue, FaultKind.BAN_418, path, method=method, retry_after_s=240)
    first = rig.start("ban-0", calls=rig.calls[:1])
    until = 0
    deadline = time.monotonic() + 60
    while not until and time.monotonic() < deadline:
        with rig.engine.connect() as conn:
            until = (
                conn.execute(
                    text("SELECT banned_until_ns FROM venue_ban WHERE venue_id = :v"), {"v": venue}
                ).scalar()
                or 0
            )
        time.sleep(0.05)
    assert until, "the first process never wrote the ban"
    os.kill(first.pid, signal.SIGKILL)  # it sleeps through the ban: end it; the other resumes
    first.join()
    second = rig.start("ban-1", mode="resume")
    rig.finish(second)
    rig.judge()
    writes = [x for x in rig.seen if x.venue == venue and x.method == "POST" and x.path == path]
    assert [x.status for x in writes][:1] == [418]
    assert writes[1:]
    assert all(x.at_ns >= until for x in writes[1:]), [
        (x.status, (x.at_ns - until) / 1e9) for x in writes
    ]
    print(f"ban: {len(writes)} order posts, resent {(writes[1].at_ns - writes[0].at_ns) / 1e9:.0f}"
          f" s (venue time) after the 418, {time.monotonic() - t0:.1f} s")  # fmt: skip


def _kill_mid_flight(rig: Rig, *, applied: bool, lock_result: bool) -> None:
    venue = "sim-a"
    ctl = rig.control()
    hold = ctl.hold(venue, TRANSFER, method="POST", applied=applied, max_hold_s=120)
    victim = rig.start("victim", calls=rig.calls[:1])
    assert ctl.wait_held(venue, hold, timeout_s=60)
    row_lock = None
    if lock_result:
        row_lock = rig.engine.connect()
        row_lock.begin()
        locked = row_lock.execute(text(
            "SELECT idempotency_key FROM transfer WHERE venue_id = :v AND attempts > 0 "
            "AND status IN ('pending', 'sent', 'unknown') FOR UPDATE"
        ), {"v": venue}).all()  # fmt: skip
        assert len(locked) == 1
        me = row_lock.execute(text("SELECT pg_backend_pid()")).scalar()
        ctl.release(venue, hold)  # the answer reaches the victim; its result UPDATE blocks
        blocked: list[Any] = []
        deadline = time.monotonic() + 30
        while not blocked and time.monotonic() < deadline:
            with rig.engine.connect() as conn:
                blocked = conn.execute(text(
                    "SELECT pid FROM pg_stat_activity WHERE :me = ANY(pg_blocking_pids(pid))"
                ), {"me": me}).all()  # fmt: skip
            time.sleep(0.02)
        assert blocked, "the victim's result commit never reached the row lock"
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    assert victim.exitcode == -signal.SIGKILL
    if row_lock is not None:
        row_lock.rollback()
        row_lock.close()
    else:
        ctl.release(venue, hold, drop=True)  # the answer goes nowhere: its client is dead
    ctl.close()
    resumer = rig.start("resumer", mode="resume")
    rig.finish(resumer)


@pytest.mark.parametrize(
    ("applied", "lock_result"),
    [(False, False), (True, False), (True, True)],
    ids=["after-intent-before-send", "after-send-answer-held", "before-result-commit"],
)
def test_kill_9_mid_flight_then_a_fresh_process_resumes(
    rig: Rig, applied: bool, lock_result: bool
) -> None:
    t0 = time.monotonic()
    _kill_mid_flight(rig, applied=applied, lock_result=lock_result)
    rows = rig.judge()
    posts = [x for x in _sent_to_venue(rig) if x.venue == "sim-a"]
    leg = [r for r in rows if r.venue_id == "sim-a" and r.asset == (r.to_asset or r.asset)]
    assert len(leg) == 1
    assert leg[0].status == TransferState.CONFIRMED.value
    # applied: the venue's one movement is found by lookup, never resent; not applied: proven
    # absent, then resent once under the same key
    assert len(posts) == (1 if applied else 2)
    assert leg[0].attempts == len(posts)
    print(f"kill -9 (applied={applied}, lock={lock_result}): {len(rows)} legs, "
          f"{len(posts)} transfer post(s) at sim-a, {time.monotonic() - t0:.1f} s")  # fmt: skip
