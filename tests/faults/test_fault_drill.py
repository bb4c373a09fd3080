"""Fault injection: margin calls executed under each fault, then judged by four oracles.

After every fault: nothing happened twice at the venue, nothing confirmed was lost, every leg
is final, reconciliation finds venue and store in agreement, and the audit chain verifies
(``core.execution.drill``). One named trial per fault of issue 14, then a small seeded random
campaign (the benchmark runs ≥ 1,000 faults: ``benchmarks/faults.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from core.config import DeskConfig, load_desk
from core.domain import WalletKind
from core.execution.drill import TrialResult, run_campaign, run_trial
from core.venues.factory import DeskVenues
from core.venues.sim.faults import FaultKind

DESK_FILE = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
TRANSFER = "/sapi/v1/asset/transfer"
HISTORY = "/sapi/v1/asset/transfer"  # GET: the history the lookup reads


@pytest.fixture(scope="module")
def desk() -> DeskConfig:
    return load_desk(DESK_FILE)


def _on_both(
    kind: FaultKind, *, method: str = "POST", **kw: object
) -> Callable[[DeskVenues, random.Random], int]:
    def inject(dv: DeskVenues, rng: random.Random) -> int:
        for e in dv.engines.values():
            e.faults.inject(kind, TRANSFER, method=method, **kw)  # type: ignore[arg-type]
        return len(dv.engines)

    return inject


def _halt_mid_plan(dv: DeskVenues, rng: random.Random) -> int:
    dv.engines["sim-a"].faults.halt_pair(WalletKind.SPOT, WalletKind.MARGIN)
    return 1


def _skew(dv: DeskVenues, rng: random.Random) -> int:
    for e in dv.engines.values():
        e.faults.skew_desk_clock(0.9)
    return len(dv.engines)


def _lag_and_timeout(dv: DeskVenues, rng: random.Random) -> int:
    for e in dv.engines.values():
        e.faults.lag_transfer_history(60.0)
        e.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    return 2 * len(dv.engines)


def _empty_history_and_timeout(dv: DeskVenues, rng: random.Random) -> int:
    for e in dv.engines.values():
        e.faults.inject(FaultKind.HISTORY_EMPTY, HISTORY, method="GET", times=3)
        e.faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    return 2 * len(dv.engines)


NAMED: dict[str, Callable[[DeskVenues, random.Random], int]] = {
    "timeout, transfer applied": _on_both(FaultKind.TIMEOUT_APPLIED),
    "timeout, transfer not applied": _on_both(FaultKind.TIMEOUT_NOT_APPLIED),
    "timeout, transfer applied late": _on_both(FaultKind.LATE_APPLY, delay_s=30.0),
    "garbled 200 after applying": _on_both(FaultKind.GARBLED_AFTER_APPLY),
    "HTML 200 after applying": _on_both(FaultKind.HTML_AFTER_APPLY),
    "200 without tranId after applying": _on_both(FaultKind.NO_ID_AFTER_APPLY),
    "429 burst": _on_both(FaultKind.RATE_LIMIT_429, times=5, retry_after_s=2),
    "418 burst": _on_both(FaultKind.BAN_418, times=3, retry_after_s=30),
    "429 that turns into a ban": _on_both(FaultKind.RATE_LIMIT_THEN_BAN, retry_after_s=5),
    "server error": _on_both(FaultKind.SERVER_ERROR, times=2),
    "insufficient funds": _on_both(FaultKind.INSUFFICIENT_FUNDS),
    "wallet pair halted mid-plan": _halt_mid_plan,
    "desk clock skew": _skew,
    "history lags behind a timed-out transfer": _lag_and_timeout,
    "history comes back empty": _empty_history_and_timeout,
}


def _judge(t: TrialResult) -> None:
    detail = "\n".join(t.notes[-30:])
    assert t.calls >= 1, detail
    assert t.duplicates == 0, detail
    assert t.lost == 0, detail
    assert t.unresolved == 0, detail
    assert t.drifts == 0, detail
    assert t.chain_ok, detail


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_fault_leaves_no_duplicate_loss_drift_or_open_leg(
    desk: DeskConfig, name: str
) -> None:
    t = run_trial(desk, 7, inject=NAMED[name], crash=None)
    _judge(t)
    assert t.faults_injected >= 1 or name in {"wallet pair halted mid-plan", "desk clock skew"}


@pytest.mark.parametrize("crash", ["before_send", "after_apply"])
def test_executor_crash_then_restart_resolves_every_leg_once(desk: DeskConfig, crash: str) -> None:
    """The executor dies right before a send, or after the venue applied it and before the
    answer was recorded; a new executor (after the lease expires) finishes the job."""
    t = run_trial(desk, 11, inject=lambda dv, rng: 0, crash=crash)
    _judge(t)
    assert any(n.startswith("crashed:") for n in t.notes)


def test_two_executors_racing_on_one_store_send_each_leg_once(desk: DeskConfig) -> None:
    t = run_trial(desk, 13, inject=_on_both(FaultKind.TIMEOUT_APPLIED), crash=None, racers=2)
    _judge(t)


def test_seeded_random_campaign_is_clean(desk: DeskConfig) -> None:
    result = run_campaign(desk, seed=1000, min_faults=25)
    s = result.summary()
    assert s["faults_injected"] >= 25
    assert (s["duplicates"], s["lost"], s["unresolved"], s["drifts"], s["chain_failures"]) == (
        0, 0, 0, 0, 0,
    )  # fmt: skip
    assert s["legs"] > s["trials"]
