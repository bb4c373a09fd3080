"""The margin-call flow on the example desk's simulated venues (counted at the simulator)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.venues.sim.faults import FaultKind
from flows.events import EVENT_PAYLOAD_KEYS, MARGIN_CURED, MARGIN_ESCALATED, event_id
from flows.margin_call_flow import margin_call_flow
from tests.flows.conftest import DESK_FILE, Desk

TRANSFER = "/sapi/v1/asset/transfer"


def _retries(events: list[Any], task: str) -> int:
    """Retries Prefect scheduled for task runs whose name starts with ``task``."""
    return sum(
        1
        for e in events
        if e.event in ("prefect.task-run.Retrying", "prefect.task-run.AwaitingRetry")
        and e.resource.get("prefect.resource.name", "").startswith(task)
    )


def test_margin_call_flow_cures_the_pool_once_and_a_second_run_moves_nothing(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    first = margin_call_flow(desk_file=DESK_FILE, pool_id="sim-b.opt")
    assert first["status"] == "cured"
    assert first["plan_versions"] == [1]
    assert first["transfers_confirmed"] == 1
    assert first["ratio"] >= first["target_ratio"] == 2.04
    assert shocked.transfers("sim-b") == 1
    call_id = first["margin_call_id"]
    # The trigger's run after the fast path: the call is handled, nothing moves.
    second = margin_call_flow(desk_file=DESK_FILE, margin_call_id=call_id, trigger="event")
    assert (second["status"], second["note"]) == ("cured", "already cured: nothing to do")
    assert shocked.transfers("sim-b") == 1
    (cured,) = emitted("pmr.")
    assert cured.event == MARGIN_CURED
    assert cured.id == event_id(MARGIN_CURED, call_id)
    assert tuple(cured.payload) == EVENT_PAYLOAD_KEYS[MARGIN_CURED]
    assert cured.resource.id == "pmr.pool.sim-b.sim-b.opt"
    assert {k: cured.payload[k] for k in ("margin_call_id", "pool_id", "venue", "plan_versions",
                                          "legs", "trigger", "desk_file")} == {
        "margin_call_id": call_id, "pool_id": "sim-b.opt", "venue": "sim-b",
        "plan_versions": "v1", "legs": 1, "trigger": "manual", "desk_file": DESK_FILE,
    }  # fmt: skip
    assert cured.payload["ratio"] >= cured.payload["target_ratio"] == 2.04
    assert _retries(emitted("prefect.task-run."), "leg") == 0


def test_leg_left_in_flight_is_retried_by_its_task_and_found_without_a_resend(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    # The venue books the transfer 60 s after the request, which never gets an answer, and the
    # executor stops looking after 30 s: the first task attempt leaves the leg unknown, the
    # second finds it booked at 60 s but not credited yet (its 30 s are up again), the third
    # sees it confirmed. Each in-flight leg is a LegInFlight (retryable); no attempt resends.
    shocked.rt.executor_options = {"lookup_timeout_s": 30.0}
    shocked.dv.engines["sim-b"].faults.inject(
        FaultKind.LATE_APPLY, TRANSFER, method="POST", delay_s=60
    )
    result = margin_call_flow(desk_file=DESK_FILE, pool_id="sim-b.opt")
    assert result["status"] == "cured"
    assert shocked.transfers("sim-b") == 1  # booked once, never resent
    assert _retries(emitted("prefect.task-run."), "leg") == 2


def test_transient_read_error_is_retried_by_the_load_state_task(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    # Three 503s in a row outlast the adapter's own three read attempts: the task retries.
    shocked.dv.engines["sim-a"].faults.inject(FaultKind.SERVER_ERROR, "/", method="GET", times=3)
    result = margin_call_flow(desk_file=DESK_FILE, pool_id="sim-b.opt")
    assert result["status"] == "cured"
    assert _retries(emitted("prefect.task-run."), "load-state") == 1
    assert shocked.transfers("sim-b") == 1


def test_unknown_outcome_is_not_retried_by_prefect_and_is_resolved_by_lookup(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    shocked.dv.engines["sim-b"].faults.inject(FaultKind.TIMEOUT_APPLIED, TRANSFER, method="POST")
    result = margin_call_flow(desk_file=DESK_FILE, pool_id="sim-b.opt")
    assert result["status"] == "cured"
    assert shocked.transfers("sim-b") == 1
    assert _retries(emitted("prefect.task-run."), "leg") == 0


def test_halted_venues_escalate_the_call_without_moving_anything(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    for e in shocked.dv.engines.values():
        e.faults.halt_venue()
    result = margin_call_flow(desk_file=DESK_FILE, pool_id="sim-b.opt")
    assert result["status"] == "escalated"
    assert result["transfers_confirmed"] == 0
    assert shocked.transfers("sim-a") == shocked.transfers("sim-b") == 0
    (escalated,) = emitted("pmr.")
    assert escalated.event == MARGIN_ESCALATED
    assert tuple(escalated.payload) == EVENT_PAYLOAD_KEYS[MARGIN_ESCALATED]
    assert escalated.payload["uncovered_usd"] > 0
    assert escalated.payload["reason"].startswith("ratio below target")
    assert _retries(emitted("prefect.task-run."), "leg") == 0  # a refusal is not retried


def test_call_on_the_second_venue_is_planned_on_its_own_venue_when_prices_drift_apart(
    shocked: Desk,
) -> None:
    # 15 s on, the two simulated venues' seeded price paths no longer agree: the cycle's
    # portfolio is then the first pool's venue alone. Planned on it, sim-b.opt's v1 found no
    # source ("no source can deliver") and only the re-plan cured it; v1 must be the cure.
    shocked.clock.advance(15.0)
    result = margin_call_flow(desk_file=DESK_FILE, pool_id="sim-b.opt")
    assert result["status"] == "cured"
    assert result["plan_versions"] == [1]
