"""The monitor, reconcile and stress-test flows on the example desk's simulated venues."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.domain import Asset, WalletKind
from core.errors import ConfigError
from flows.events import (
    EVENT_PAYLOAD_KEYS,
    MARGIN_CALL,
    MARGIN_CURED,
    RECONCILE_DRIFT,
    STRESS_BREACH,
    event_id,
)
from flows.margin_call_flow import margin_call_flow
from flows.monitor_flow import monitor_flow
from flows.reconcile_flow import reconcile_flow
from flows.stress_flow import stress_test_flow
from tests.flows.conftest import DESK_FILE, Desk


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (latest,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            limit=1,
            sort="CREATED_DESC",  # type: ignore[arg-type]
        )
    return latest


def test_monitor_raises_the_call_once_cures_it_in_process_and_the_trigger_run_is_a_no_op(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    result = monitor_flow(desk_file=DESK_FILE, cycles=2, period_s=0)
    assert (result["cycles"], result["refused"]) == (2, 0)
    (call,) = result["calls"]  # the second cycle finds the pool cured: no second call
    assert (call["pool_id"], call["created"], call["status"]) == ("sim-b.opt", True, "cured")
    assert shocked.transfers("sim-b") == 1
    assert {r["pool"]: r["action"] for r in result["last"]} == {
        "sim-a.pm": "-", "sim-b.um": "-", "sim-b.opt": "-",
    }  # fmt: skip
    # The deployment triggered by the event runs after the fast path: nothing moves.
    again = margin_call_flow(desk_file=DESK_FILE, margin_call_id=call["margin_call_id"],
                             trigger="event")  # fmt: skip
    assert again["status"] == "cured"
    assert shocked.transfers("sim-b") == 1
    raised, cured = emitted("pmr.")
    assert raised.event == MARGIN_CALL
    assert raised.id == event_id(MARGIN_CALL, call["margin_call_id"])
    assert raised.resource.id == "pmr.pool.sim-b.sim-b.opt"
    assert tuple(raised.payload) == EVENT_PAYLOAD_KEYS[MARGIN_CALL]
    p = raised.payload
    assert (p["margin_call_id"], p["pool_id"], p["venue"], p["desk_level"], p["call_level"],
            p["target_ratio"], p["desk_file"]) == (
        call["margin_call_id"], "sim-b.opt", "sim-b", "call", 1.6, 2.04, DESK_FILE,
    )  # fmt: skip
    assert 1.45 < p["ratio"] < 1.46
    assert p["deficit_usd"] > 400_000
    assert all(isinstance(v, str | int | float) for v in p.values())
    assert (cured.event, cured.payload["trigger"]) == (MARGIN_CURED, "monitor")


def test_monitor_on_stale_prices_acts_on_nothing_and_says_so(
    shocked: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    shocked.dv.engines["sim-b"].prices.freeze("BTC", shocked.clock.timestamp_ns())
    shocked.clock.advance(shocked.rt.desk.desk.max_price_age_s + 1)
    result = monitor_flow(desk_file=DESK_FILE, cycles=1, period_s=0)
    assert (result["cycles"], result["refused"], result["calls"]) == (1, 1, [])
    assert shocked.transfers("sim-b") == 0
    assert emitted("pmr.") == []
    page = _artifact("monitor-stale-prices").data
    assert page.startswith("# Monitor refused stale prices")
    assert "prices not trusted, nothing acted on" in page


def test_reconcile_flow_reports_a_movement_behind_the_ledgers_back_as_drift(
    calm: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    first = reconcile_flow(desk_file=DESK_FILE)
    assert (first["ok"], first["drifts"], first["baseline"]) == (True, 0, ["sim-a", "sim-b"])
    calm.clock.advance(1)
    calm.dv.venues["sim-a"].transfer(
        Asset("USDT"), Decimal(5000), WalletKind.SPOT, WalletKind.FUNDING, "k-manual",
        ts_deadline_ns=None,
    )  # fmt: skip
    calm.clock.advance(1)
    second = reconcile_flow(desk_file=DESK_FILE)
    assert (second["ok"], second["drifts"], second["baseline"]) == (False, 2, [])
    seq, _, digest = second["anchor"].partition(":")
    assert seq == "0"  # the calm desk's trail is empty: the head anchored is its genesis
    assert len(digest) == 64
    drifts = emitted("pmr.")
    assert [e.event for e in drifts] == [RECONCILE_DRIFT] * 2
    assert all(tuple(e.payload) == EVENT_PAYLOAD_KEYS[RECONCILE_DRIFT] for e in drifts)
    got = sorted((e.payload["wallet"], e.payload["drift"], e.payload["cause"]) for e in drifts)
    assert got == [
        ("funding", 5000.0, "unrecorded_movement"), ("spot", -5000.0, "unrecorded_movement"),
    ]  # fmt: skip
    assert {e.resource.id for e in drifts} == {"pmr.venue.sim-a"}
    table = _artifact("reconcile-drifts")
    assert "2 drift(s)" in table.description


def test_stress_flow_fans_out_by_pool_batch_and_reports_weak_pools(
    calm: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    scenarios = ["joint-btc-30%-vol+50%", "halt+crash@sim-b", "joint-btc+20%-vol+25%"]
    result = stress_test_flow(
        desk_file=DESK_FILE, scenarios=scenarios, record=True, as_of="2026-11-27T00:00:00+00:00"
    )
    assert (result["pools"], result["scenarios"], result["batches"]) == (3, 3, 3)
    assert result["recorded"] == 9
    assert set(result["weak_pools"]) <= {"sim-a.pm", "sim-b.um", "sim-b.opt"}
    assert result["weak_pools"]  # BTC -30 % with vol +50 % breaches at least one pool
    assert result["advice"]
    assert Path(result["charts"][0]).is_file()
    breaches = emitted("pmr.")
    assert sorted(e.payload["pool_id"] for e in breaches) == sorted(result["weak_pools"])
    assert all(e.event == STRESS_BREACH for e in breaches)
    assert all(tuple(e.payload) == EVENT_PAYLOAD_KEYS[STRESS_BREACH] for e in breaches)
    assert all(e.payload["desk_level"] in ("call", "reduce_only", "liquidation") for e in breaches)
    assert _artifact("stress-progress").data == 100.0
    summary = _artifact("stress-summary").data
    assert summary.startswith("# Stress test: 3 pools × 3 scenarios")
    assert "## Pre-funding advice" in summary
    assert _artifact("stress-chart").data.startswith(
        "# Stress heat map\n\n![Stress heat map](data:image/png;base64,"
    )
    rows = json.loads(_artifact("stress-results").data)
    assert len(rows) == 9
    assert [r["ratio"] for r in rows] == sorted((r["ratio"] for r in rows), key=float)
    assert rows[0]["desk_level"] == "liquidation"


def test_stress_flow_on_a_dask_cluster_gives_the_rows_of_the_thread_runner(
    calm: Desk, emitted: Callable[[str], list[Any]]
) -> None:
    # The batches are plain-valued tasks, so a Dask cluster (prefect-dask) runs them as threads
    # do; a one-worker LocalCluster without processes keeps the test light.
    from prefect_dask.task_runners import DaskTaskRunner

    scenarios = ["joint-btc-30%-vol+50%", "halt+crash@sim-b"]
    kw: dict[str, Any] = {"desk_file": DESK_FILE, "scenarios": scenarios,
                          "as_of": "2026-11-27T00:00:00+00:00"}  # fmt: skip
    on_threads = stress_test_flow(**kw)
    threads_rows = json.loads(_artifact("stress-results").data)
    dask = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False})
    on_dask = stress_test_flow.with_options(task_runner=dask)(**kw)
    assert json.loads(_artifact("stress-results").data) == threads_rows
    assert on_dask["weak_pools"] == on_threads["weak_pools"]
    assert on_dask["batches"] == on_threads["batches"] == 3


def test_stress_task_runner_from_the_environment_value() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask.task_runners import DaskTaskRunner

    from flows.stress_flow import stress_task_runner

    assert isinstance(stress_task_runner(""), ThreadPoolTaskRunner)
    assert isinstance(stress_task_runner("local"), DaskTaskRunner)
    remote = stress_task_runner("tcp://10.0.0.5:8786")
    assert isinstance(remote, DaskTaskRunner)
    assert remote.address == "tcp://10.0.0.5:8786"
    with pytest.raises(ConfigError, match="PMR_STRESS_DASK"):
        stress_task_runner("http://nope")
