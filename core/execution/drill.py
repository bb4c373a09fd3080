"""Fault drill: margin calls executed on the simulator under seeded random faults, then judged.

A *trial* takes the example desk (or any desk whose venues are simulated), moves prices so
some pools fall to their ``call`` level, raises and plans their margin calls, injects a few
faults drawn from a seeded generator, executes, crashes the executor at a random point in some
trials and resumes with a new one, lets venue time run until everything settles, and then asks
four independent questions:

* **duplicates**: did the venue apply any movement more often than the ledger confirmed it?
  (applied transfers and margin orders at the simulator, as a multiset of (venue, asset,
  amount), minus the confirmed legs);
* **lost**: did the ledger confirm a movement the venue never applied, or mark ``failed`` one it
  did apply?
* **unresolved**: is any leg still ``pending``, ``sent`` or ``unknown``?
* **drift / chain**: does reconciliation find venue and store in agreement, and does the audit
  chain verify?

The faults are the simulator's (``core.venues.sim.faults``): timeouts with the transfer
applied, not applied or applied late; garbled, HTML or id-less 200s after applying; 429, 418 and
a 429 that turns into a ban when retried too soon; server errors; insufficient funds; empty
and lagging transfer history; a wallet pair halted mid-plan; desk clock skew. Crashes are
simulated in-process: the venue adapter raises :class:`SimulatedCrash` (a ``BaseException``,
as ``kill -9`` stops everything) just before a send or just after the venue applied it and
before the executor could record the answer; the next executor finds the leg in the store
(after its lease expires) and resolves it by lookup. Real ``kill -9`` of an executor process
is in the test suite (``tests/execution/``).

Used by ``benchmarks/faults.py`` (≥ 1,000 faults) and by a smaller seeded campaign in the
tests. Venue time is a :class:`~core.clock.ManualClock`, so lookup windows of minutes pass in
microseconds.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import WalletKind
from core.execution.cure import DeskCure, check_plan_against_desk
from core.execution.executor import Executor
from core.execution.margin_call import detect_by_pool, open_call, plan_call
from core.ledger.audit_log import verify_audit_chain
from core.ledger.reconcile import reconcile
from core.ledger.store import init_db, make_engine, session_scope
from core.ledger.tables import TransferRow
from core.ledger.vocab import TransferState
from core.routing import Router
from core.venues.factory import DeskVenues, build_desk_venues
from core.venues.sim.faults import FaultKind

__all__ = [
    "CampaignResult",
    "SimulatedCrash",
    "TrialResult",
    "applied_movements",
    "confirmed_movements",
    "run_campaign",
    "run_trial",
]

T0_NS = 1_795_737_600_000_000_000  # 2026-11-27 00:00 UTC

#: Price moves that put pools of the example desk into a margin call (``call`` level).
SHOCKS: tuple[Mapping[str, float], ...] = (
    {"ETH": -0.26, "BTC": 0.08},
    {"ETH": -0.30, "BTC": 0.05},
    {"ETH": -0.22, "BTC": 0.10},
)

#: (kind, path prefix): the write paths a plan's legs use, and the read that looks them up.
_TRANSFER = "/sapi/v1/asset/transfer"
_ORDER = "/sapi/v1/margin/order"
_WRITE_FAULTS = (
    FaultKind.TIMEOUT_APPLIED,
    FaultKind.TIMEOUT_NOT_APPLIED,
    FaultKind.LATE_APPLY,
    FaultKind.GARBLED_AFTER_APPLY,
    FaultKind.HTML_AFTER_APPLY,
    FaultKind.NO_ID_AFTER_APPLY,
    FaultKind.RATE_LIMIT_429,
    FaultKind.BAN_418,
    FaultKind.SERVER_ERROR,
    FaultKind.INSUFFICIENT_FUNDS,
)


class SimulatedCrash(BaseException):
    """The executor process 'dies' here (a ``BaseException``: no ``except Exception`` stops it)."""


@dataclass
class _CrashingVenue:
    """A venue that crashes its caller once, before a send or after the venue applied one."""

    inner: Any
    when: str  # "before_send" | "after_apply"
    armed: bool = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.armed and self.when == "before_send":
            self.armed = False
            raise SimulatedCrash(f"crash before {name}")
        result = getattr(self.inner, name)(*args, **kwargs)
        if self.armed and self.when == "after_apply":
            self.armed = False
            raise SimulatedCrash(f"crash after {name} applied, before its answer was recorded")
        return result

    def transfer(self, *args: Any, **kwargs: Any) -> Any:
        return self._write("transfer", *args, **kwargs)

    def margin_order(self, *args: Any, **kwargs: Any) -> Any:
        return self._write("margin_order", *args, **kwargs)


@dataclass
class TrialResult:
    """One trial's verdict and what it exercised."""

    seed: int
    faults_injected: int  # faults the venue actually served (taken from its plan)
    crash: str | None
    calls: int
    legs: int
    duplicates: int
    lost: int
    unresolved: int
    drifts: int
    chain_ok: bool
    leg_latencies_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (
            not (self.duplicates or self.lost or self.unresolved or self.drifts) and self.chain_ok
        )


@dataclass
class CampaignResult:
    """A campaign's totals (the benchmark prints them as JSON)."""

    trials: list[TrialResult]
    seconds: float

    def summary(self) -> dict[str, Any]:
        lat = sorted(x for t in self.trials for x in t.leg_latencies_ms)

        def q(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3)

        return {
            "trials": len(self.trials),
            "faults_injected": sum(t.faults_injected for t in self.trials),
            "crashes": sum(1 for t in self.trials if t.crash),
            "calls": sum(t.calls for t in self.trials),
            "legs": sum(t.legs for t in self.trials),
            "duplicates": sum(t.duplicates for t in self.trials),
            "lost": sum(t.lost for t in self.trials),
            "unresolved": sum(t.unresolved for t in self.trials),
            "drifts": sum(t.drifts for t in self.trials),
            "chain_failures": sum(1 for t in self.trials if not t.chain_ok),
            "leg_latency_ms_p50": q(0.5),
            "leg_latency_ms_p99": q(0.99),
            "leg_latency_ms_mean": round(statistics.fmean(lat), 3) if lat else None,
            "seconds": round(self.seconds, 2),
        }


def _inject(dv: DeskVenues, rng: random.Random, n: int) -> int:
    """Inject ``n`` random faults on random venues; return how many were injected."""
    venues = sorted(dv.engines)
    for _ in range(n):
        plan = dv.engines[rng.choice(venues)].faults
        roll = rng.random()
        if roll < 0.08:
            pair = rng.choice([(WalletKind.SPOT, WalletKind.MARGIN), (WalletKind.SPOT, WalletKind.OPTIONS),
                               (WalletKind.FUNDING, WalletKind.MARGIN)])  # fmt: skip
            plan.halt_pair(*pair)
            continue
        if roll < 0.14:
            plan.skew_desk_clock(rng.choice([-0.9, -0.4, 0.4, 0.9]))
            continue
        kind = rng.choice(_WRITE_FAULTS)
        path = _ORDER if rng.random() < 0.1 else _TRANSFER
        plan.inject(kind, path, method="POST", times=rng.choice([1, 1, 1, 2]),
                    retry_after_s=rng.choice([1, 5, 30]), delay_s=rng.choice([5.0, 30.0, 90.0]))  # fmt: skip
    return n


def _taken(dv: DeskVenues, injected: int) -> int:
    left = sum(e.faults.pending() for e in dv.engines.values())
    return max(0, injected - left)


def applied_movements(dv: DeskVenues) -> Counter[tuple[str, str, Decimal]]:
    """What the venues applied: transfers as (venue, asset, amount), conversions (margin
    orders and accepted converts) counted per venue."""
    out: Counter[tuple[str, str, Decimal]] = Counter()
    for name, e in dv.engines.items():
        for t in e.transfers:
            if t.status != "FAILED":
                out[(name, t.asset, t.amount.normalize())] += 1
        conversions = len(e.margin_orders) + len(e.convert_orders)
        if conversions:
            out[(name, "conversion", Decimal(0))] += conversions
    return out


def confirmed_movements(rows: list[TransferRow]) -> Counter[tuple[str, str, Decimal]]:
    """What the ledger says moved, in the same terms as :func:`applied_movements`."""
    out: Counter[tuple[str, str, Decimal]] = Counter()
    for r in rows:
        if r.status != TransferState.CONFIRMED.value:
            continue
        if r.to_asset and r.to_asset != r.asset:
            out[(r.venue_id, "conversion", Decimal(0))] += 1
        else:
            out[(r.venue_id, r.asset, r.amount.normalize())] += 1
    return out


_TEMPLATE: dict[str, Path] = {}


def _store() -> Engine:
    """A fresh migrated SQLite store in a temporary file: a copy of one migrated template
    (running the migrations costs ~0.5 s, a third of a trial)."""
    if "path" not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="pmr-drill-"))
        template = folder / "template.db"
        engine = make_engine(f"sqlite:///{template}")
        init_db(engine)
        engine.dispose()
        _TEMPLATE["path"] = template
    template = _TEMPLATE["path"]
    path = template.with_name(f"trial-{uuid.uuid4().hex[:12]}.db")
    shutil.copyfile(template, path)
    return make_engine(f"sqlite:///{path}")


#: ``inject(venues, rng) -> number of faults injected``: a trial's faults (default: random).
Injector = Callable[[DeskVenues, random.Random], int]


def run_trial(desk: DeskConfig, seed: int, *, engine_factory: Callable[[], Engine] = _store,
              faults_per_trial: int = 6, crash_prob: float = 0.3,
              inject: Injector | None = None, crash: str | None = "random",
              racers: int = 1, router: Router | None = None) -> TrialResult:  # fmt: skip
    """One seeded trial: shock, calls, faults, execute (maybe crash and resume), judge.

    ``inject`` replaces the random faults with chosen ones; ``crash`` is ``"random"`` (with
    ``crash_prob``), ``None``, ``"before_send"`` or ``"after_apply"``; ``racers`` executors
    run every call at once (threads on one store: the store's claims and leases decide).
    ``router`` is the one a campaign's process keeps across trials (as a monitor keeps one):
    it reuses the problems it built, which otherwise are a sixth of a trial.
    """
    rng = random.Random(seed)
    clock = ManualClock(T0_NS + seed * 3_600_000_000_000)
    engine = engine_factory()
    notes: list[str] = []
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        shock = rng.choice(SHOCKS)
        for e in dv.engines.values():
            e.prices.apply_scenario(dict(shock))
        cure = DeskCure(desk, dv.venues, clock, router=router)
        with session_scope(engine) as s:
            reconcile(s, desk, dv.venues, now=clock.now())  # the baseline
        clock.advance(1.0)  # legs are sent after the baseline was read, not at its instant
        reports, portfolios, due = detect_by_pool(cure)
        calls = []
        for d in due:
            call, _ = open_call(engine, cure, d, clock=clock, audit_key=None)
            plan_call(engine, cure, call, reports, portfolios[d.pool_id], clock=clock,
                      audit_key=None)  # fmt: skip
            calls.append(call)
        injected = _inject(dv, rng, faults_per_trial) if inject is None else inject(dv, rng)
        if crash == "random":
            crash = (
                rng.choice(["before_send", "after_apply"]) if rng.random() < crash_prob else None
            )
        venues: dict[str, Any] = dict(dv.venues)
        if crash:
            victim = rng.choice(sorted(venues))
            venues[victim] = _CrashingVenue(venues[victim], crash)

        def executor(owner: str, vs: Mapping[str, Any]) -> Executor:
            return Executor(engine, vs, clock, owner=owner, verifier=cure.verify,
                            replanner=cure.replan, on_step=notes.append,
                            plan_check=lambda r: check_plan_against_desk(desk, r))  # fmt: skip

        def run_calls(ex: Executor) -> None:
            for call in calls:
                try:
                    ex.execute(call.id)
                except SimulatedCrash as exc:
                    notes.append(f"crashed: {exc}")
                    return  # the process is gone: nothing else it would have done happens
                except Exception as exc:  # a refused or failed call is a verdict, not a crash
                    notes.append(f"{ex.owner} call {call.id}: {type(exc).__name__}: {exc}")

        if racers == 1:
            run_calls(executor(f"drill-{seed}-a", venues))
        else:
            threads = [
                threading.Thread(target=run_calls, args=(executor(f"drill-{seed}-{i}", venues),))
                for i in range(racers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        # Restart: venue time runs past leases, late applies and history lags; a new executor
        # resumes every non-final leg, then every open call is executed to its end.
        for e in dv.engines.values():
            e.faults.resume()
        for round_ in range(6):
            clock.advance(200.0)
            fresh = executor(f"drill-{seed}-r{round_}", dv.venues)
            try:
                fresh.resume()
                for call in calls:
                    try:
                        fresh.execute(call.id)
                    except Exception as exc:
                        notes.append(f"resume {call.id}: {type(exc).__name__}: {exc}")
            except Exception as exc:
                notes.append(f"resume: {type(exc).__name__}: {exc}")
            with Session(engine) as s:
                pending = s.exec(select(TransferRow).where(
                    TransferRow.status.in_([st.value for st in TransferState if not st.is_final])  # type: ignore[attr-defined]
                )).all()  # fmt: skip
            if not pending:
                break
        clock.advance(5.0)
        with Session(engine) as s:
            rows = list(s.exec(select(TransferRow)).all())
        applied, confirmed = applied_movements(dv), confirmed_movements(rows)
        duplicates = sum((applied - confirmed).values())
        lost = sum((confirmed - applied).values())
        unresolved = sum(1 for r in rows if not TransferState(r.status).is_final)
        with session_scope(engine) as s:
            recon = reconcile(s, desk, dv.venues, now=clock.now())
            drifts = len(recon.drifts)
            notes += [f"drift: {d}" for d in recon.drifts]
        with Session(engine) as s:
            chain_ok = verify_audit_chain(s).ok
        taken = _taken(dv, injected)
    engine.dispose()
    if engine.url.database and engine.url.database.endswith(".db"):
        Path(engine.url.database).unlink(missing_ok=True)
    return TrialResult(
        seed=seed, faults_injected=taken, crash=crash, calls=len(calls), legs=len(rows),
        duplicates=duplicates, lost=lost, unresolved=unresolved, drifts=drifts,
        chain_ok=chain_ok,
        leg_latencies_ms=[float(r.latency_ms) for r in rows if r.latency_ms is not None],
        notes=notes,
    )  # fmt: skip


def run_campaign(desk: DeskConfig, *, seed: int, min_faults: int, max_trials: int = 10_000,
                 **kw: Any) -> CampaignResult:  # fmt: skip
    """Trials with seeds ``seed, seed+1, …`` until ``min_faults`` faults were served (one
    router for them all unless ``router`` is given)."""
    kw.setdefault("router", Router())
    t0 = time.perf_counter()
    trials: list[TrialResult] = []
    served = 0
    for i in range(max_trials):
        t = run_trial(desk, seed + i, **kw)
        trials.append(t)
        served += t.faults_injected
        if served >= min_faults:
            break
    return CampaignResult(trials, time.perf_counter() - t0)
