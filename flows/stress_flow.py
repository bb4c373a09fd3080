"""The ``stress-test`` flow: the desk under the scenario library, fanned out in pool batches.

Orchestration only: scenarios, evaluation, the summary, the charts and the pre-funding advice
are ``core.stress`` (as ``pmr stress`` and ``pmr prefund`` run them). The flow:

1. splits the desk's pools into batches (at most :data:`MAX_BATCHES`: tens of task runs, never
   one per pool × scenario: the Prefect server ingests ~25 task runs/s on SQLite, DESIGN §9) and
   evaluates each batch as a task (``core.stress.evaluate.evaluate(..., pools=batch)``; a pool's
   rows do not depend on the other pools, so the batches are independent), each holding a slot
   of the ``pmr-stress-batches`` global concurrency limit; a progress artifact follows them;
2. publishes a table of the results (worst first), a markdown summary with the pre-funding
   advice (``core.stress.prefund``) and the ratio heat map (a PNG written under
   ``$PMR_HOME/stress/<run id>/``, shown inline);
3. emits ``pmr.stress.breach`` once per weak pool (at or below ``call`` in some scenario: its
   worst one) and, with ``record``, stores one ``stress_result`` row per pool × scenario.

Batch tasks take plain values (desk file, pool ids, scenario names, the as-of time) and rebuild
the desk and scenarios where they run, so the same flow runs its batches on a Dask cluster
through ``prefect-dask`` (:func:`stress_task_runner`): ``PMR_STRESS_DASK=local`` starts a
``LocalCluster`` per run, ``PMR_STRESS_DASK=tcp://host:8786`` uses a running scheduler, unset
runs the batches on threads. The runner is chosen when the module is imported, i.e. in the
interpreter that runs the flow (a served or a work-pool run reads its own environment);
``pmr serve`` and ``deployments/prefect.yaml`` set ``local`` unless told otherwise.
"""

from __future__ import annotations

import math
import os
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed

from core.errors import ConfigError, DataError
from flows import events
from flows.artifacts import chart_markdown, stress_rows
from flows.tasks import STRESS_BATCHES

if TYPE_CHECKING:
    from core.config import DeskConfig
    from core.stress.evaluate import PoolStress
    from core.stress.scenarios import Scenario

__all__ = [
    "MAX_BATCHES",
    "STRESS_DASK_ENV",
    "evaluate_batch",
    "pool_batches",
    "stress_task_runner",
    "stress_test_flow",
]

#: At most this many batch task runs per stress test.
MAX_BATCHES: Final = 32
#: ``local`` (a Dask ``LocalCluster`` per run), a scheduler address, or unset (threads).
STRESS_DASK_ENV: Final = "PMR_STRESS_DASK"


def stress_task_runner(value: str | None = None) -> Any:
    """The task runner of the stress-test flow's batches for ``value`` (default: the
    environment's ``PMR_STRESS_DASK``): threads, a Dask ``LocalCluster`` or a scheduler.

    Raises
    ------
    ConfigError
        A value that is neither ``local`` nor a ``tcp://`` / ``tls://`` scheduler address.
    """
    raw = (os.environ.get(STRESS_DASK_ENV, "") if value is None else value).strip()
    if not raw:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    from prefect_dask.task_runners import DaskTaskRunner

    if raw == "local":
        return DaskTaskRunner()
    if raw.startswith(("tcp://", "tls://")):
        return DaskTaskRunner(address=raw)
    raise ConfigError(
        f"{STRESS_DASK_ENV} must be 'local' or a Dask scheduler address (tcp://host:8786)",
        value=raw,
    )


_WEAK = ("call", "reduce_only", "liquidation")


def pool_batches(pool_ids: list[str], pools_per_batch: int = 0) -> list[list[str]]:
    """Split ``pool_ids`` into batches of ``pools_per_batch`` (0: as few per batch as keeps
    the count at or under :data:`MAX_BATCHES`), in order.

    >>> pool_batches(["a", "b", "c"])
    [['a'], ['b'], ['c']]
    >>> len(pool_batches([str(i) for i in range(1000)]))
    32
    """
    if pools_per_batch < 0:
        raise ConfigError("pools_per_batch must be >= 0", pools_per_batch=pools_per_batch)
    size = pools_per_batch or max(1, math.ceil(len(pool_ids) / MAX_BATCHES))
    return [pool_ids[i : i + size] for i in range(0, len(pool_ids), size)]


@lru_cache(maxsize=4)
def _desk_and_library(desk_file: str, mtime_ns: int) -> tuple[DeskConfig, dict[str, Scenario]]:
    from core.config import load_desk
    from core.stress.scenarios import library

    desk = load_desk(Path(desk_file))
    stables = [a for a, c in desk.assets.items() if c.kind == "stablecoin"]
    lib = library(venues=[v.name for v in desk.venues], assets=list(desk.assets),
                  stablecoins=stables)  # fmt: skip
    return desk, lib


def _load(desk_file: str) -> tuple[DeskConfig, dict[str, Scenario]]:
    """The desk and its scenario library (cached per process while the file is unchanged)."""
    try:
        mtime = os.stat(desk_file).st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"cannot read the desk file: {exc.strerror}", path=desk_file) from None
    return _desk_and_library(desk_file, mtime)


@task(name="stress-batch", task_run_name="stress {pool_ids}", cache_policy=NO_CACHE)
def evaluate_batch(
    desk_file: str, pool_ids: list[str], scenario_names: list[str], as_of: str
) -> list[PoolStress]:
    """Evaluate the pools of one batch under every scenario (``core.stress.evaluate``)."""
    from core.stress.evaluate import evaluate

    desk, lib = _load(desk_file)
    state = desk.initial_portfolio(datetime.fromisoformat(as_of))
    with concurrency(STRESS_BATCHES, occupy=1, strict=True):
        return evaluate(desk, state, [lib[n] for n in scenario_names], pools=pool_ids)


def _out_dir(run_id: str) -> Path:
    from core.ledger.store import pmr_home

    out = pmr_home() / "stress" / run_id
    out.mkdir(parents=True, exist_ok=True)
    return out


@flow(name="stress-test", log_prints=False, task_runner=stress_task_runner())
def stress_test_flow(
    desk_file: str,
    scenarios: list[str] | None = None,
    pools_per_batch: int = 0,
    prefund_deadline_s: float = 60.0,
    carry_bps: float = 1.0,
    record: bool = False,
    as_of: str | None = None,
) -> dict[str, Any]:
    """Stress-test the desk's starting state (as ``pmr stress``) under the scenario library.

    Parameters
    ----------
    desk_file
        The desk's TOML file.
    scenarios
        Scenario names (``pmr stress --list``); ``None``: every named scenario.
    pools_per_batch
        Pools per task run (0: at most 32 batches).
    prefund_deadline_s
        The time-to-cover deadline the pre-funding advice covers (10, 60 or 600 s; 0: none).
    carry_bps
        Cost of idle collateral per USD pre-positioned, for the advice.
    record
        Store one ``stress_result`` row per pool × scenario (the desk's store).
    as_of
        ISO time of the desk's starting state (default: now).

    Returns
    -------
    dict
        ``run_id``, ``pools``, ``scenarios``, ``batches``, ``weak_pools`` (pool → worst
        scenario), ``advice`` (lines), ``charts`` (files written), ``recorded`` (rows).
    """
    from core.stress.prefund import prefund
    from core.stress.report import frame, markdown_summary

    logger = get_run_logger()
    desk, lib = _load(desk_file)
    names = list(scenarios or lib)
    unknown = [n for n in names if n not in lib]
    if unknown:
        raise DataError("unknown scenario (see `pmr stress --list`)", scenario=", ".join(unknown))
    if prefund_deadline_s not in (0.0, 10.0, 60.0, 600.0):
        raise DataError("prefund_deadline_s must be 0, 10, 60 or 600", value=prefund_deadline_s)
    at = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    run_id = f"stress-{at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    batches = pool_batches([p.id for p in desk.pools], pools_per_batch)
    logger.info("%s: %d pools × %d scenarios in %d batch(es)",
                run_id, len(desk.pools), len(names), len(batches))  # fmt: skip

    progress = create_progress_artifact(0.0, key="stress-progress", description=run_id)
    assert isinstance(progress, uuid.UUID)  # sync call: an id, not a coroutine
    futures = [evaluate_batch.submit(desk_file, b, names, at.isoformat()) for b in batches]
    by_batch: dict[int, list[PoolStress]] = {}
    index = {id(f): i for i, f in enumerate(futures)}
    for done, fut in enumerate(as_completed(futures), start=1):
        by_batch[index[id(fut)]] = fut.result()
        update_progress_artifact(progress, 100.0 * done / len(futures))
    rows = [r for i in range(len(futures)) for r in by_batch[i]]

    df = frame(rows, lib).sort("ratio", nulls_last=True)
    create_table_artifact(
        stress_rows(df),
        key="stress-results",
        description=f"{run_id}: pool × scenario, worst ratio first (first 500 rows)",
    )
    advice: list[str] = []
    if prefund_deadline_s:
        state = desk.initial_portfolio(at)
        advice = prefund(desk, state, [lib[n] for n in names],
                         deadline_s=prefund_deadline_s, carry_bps=carry_bps).lines()  # fmt: skip
    create_markdown_artifact(markdown_summary(df, advice=advice), key="stress-summary",
                             description=run_id)  # fmt: skip

    from core.stress.charts import write_charts

    out_dir = _out_dir(run_id)
    charts = write_charts(df, [], out_dir)
    heatmap = next(p for p in charts if p.suffix == ".png")
    create_markdown_artifact(chart_markdown("Stress heat map", heatmap), key="stress-chart",
                             description=f"{run_id}: ratio per pool × scenario")  # fmt: skip

    weak: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: (r.ratio is None, r.ratio)):
        if r.desk_level in _WEAK and r.pool_id not in weak:
            weak[r.pool_id] = r.scenario
            pool = desk.pool(r.pool_id)
            events.emit(
                events.STRESS_BREACH,
                events.pool_resource(pool.venue, pool.id),
                {
                    "desk_file": desk_file, "run_id": run_id, "pool_id": pool.id,
                    "venue": pool.venue, "scenario": r.scenario, "ratio": r.ratio,
                    "desk_level": r.desk_level, "deficit_usd": r.deficit_usd,
                    "uncovered_usd": r.uncovered_usd,
                    "liquidation_before_cover": r.liquidation_before_cover,
                },
                id_parts=(run_id, pool.id),
            )  # fmt: skip
            logger.warning("weak pool %s: %s in %s (ratio %s)",
                           pool.id, r.desk_level, r.scenario, r.ratio)  # fmt: skip
    recorded = 0
    if record:
        recorded = _record(desk_file, run_id, rows, lib, desk, at)
    return {
        "run_id": run_id,
        "pools": len(desk.pools),
        "scenarios": len(names),
        "batches": len(batches),
        "weak_pools": weak,
        "advice": advice,
        "charts": [str(p) for p in charts],
        "recorded": recorded,
    }


def _record(
    desk_file: str,
    run_id: str,
    rows: list[PoolStress],
    lib: dict[str, Scenario],
    desk: DeskConfig,
    at: datetime,
) -> int:
    from sqlmodel import Session

    from core.stress.report import record_stress_results
    from flows.runtime import store_engine_for

    with Session(store_engine_for(desk_file)) as session:
        n = record_stress_results(session, run_id, rows, lib, desk, at=at)
        session.commit()
    return n
