"""``benchmarks/margin_call.py --trigger``: breach → first leg sent through ``pmr serve``.

What is measured and how is in ``margin_call.py``'s docstring; this module runs it. The
process handling follows ``tests/flows/test_serve_end_to_end.py``: ``pmr serve`` in its own
session (process group), SIGINT to the whole group when done, SIGKILL if it lingers; its
output goes to a file (a pipe nobody drains would block it). The Prefect database is created
fresh and dropped at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from flows.prefect_server import stop_process_group  # noqa: E402

DESK = ROOT / "examples" / "desk.toml"
PMR = [sys.executable, "-c", "from flows.cli import main; main()"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PREFECT_DB = "pmr_bench_prefect"
SECRET = "bench-sim-secret-0123456789"
READY_S = 300.0
CLOSED_S = 120.0
TARGET_S = 3.0
#: Each call is a new breach, alternately of the options pool on sim-b (BTC up hurts its short
#: calls) and of the portfolio-margin pool on sim-a (ETH down): the move grows by ``step``
#: until the monitor's cycle finds a call due. A cure tops its pool up to its target, so the
#: next breach of that pool needs a larger move; alternating venues spreads the cures over
#: both venues' free collateral (one pool alone runs out after ~4 calls). BTC up weakens the
#: portfolio-margin pool too, so once ETH has moved both pools often fall due in one cycle:
#: both calls are measured, their two runs started together (``same_cycle``: 2).
BREACHES = (("sim-b.opt", "BTC", 0.03), ("sim-a.pm", "ETH", -0.03))
#: The phases reported, in order (milliseconds between consecutive marks).
PHASES = ("raise_to_emit", "emit_to_ingest", "ingest_to_run_created", "created_to_pending_poll",
          "pending_to_running_interpreter", "running_to_plan", "plan_to_first_send")  # fmt: skip
MAX_STEPS = 40


def _pg(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type,unused-ignore]


def _bytecode_compiled() -> bool:
    """Whether the modules a served run imports first have ``.pyc`` files next to them."""
    import importlib.util

    tag = sys.implementation.cache_tag
    for name in ("prefect", "prefect.flow_engine", "sqlalchemy", "core.execution.executor",
                 "flows.margin_call_flow"):  # fmt: skip
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            return False
        src = Path(spec.origin)
        if not (src.parent / "__pycache__" / f"{src.stem}.{tag}.pyc").is_file():
            return False
    return True


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.is_file() else ""
        if "Ctrl-C stops" in text:
            seen = {}
            for line in text.splitlines():
                for label in ("simulated venues", "Prefect API"):
                    if line.startswith(f"{label}: "):
                        seen[label] = line.split(": ", 1)[1].split(" ")[0].strip()
            return seen
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else ""
    raise SystemExit(f"pmr serve did not become ready:\n{tail}")


def _api(api: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{api}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.loads(answer.read())


def _ts(value: str | datetime | None) -> float | None:
    """Seconds since the epoch of an API timestamp or a store datetime (naive = UTC)."""
    if value is None:
        return None
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _prefect_marks(api: str, call_id: str) -> dict[str, float | None]:
    """When the event was emitted and received, and the triggered run's state changes."""
    from flows.events import MARGIN_CALL, event_id

    eid = str(event_id(MARGIN_CALL, call_id))
    found = _api(api, "/events/filter", {"filter": {"id": {"id": [eid]}}, "limit": 1})["events"]
    marks: dict[str, float | None] = {"occurred": None, "received": None}
    if found:
        marks |= {"occurred": _ts(found[0]["occurred"]), "received": _ts(found[0]["received"])}
    runs = _api(api, "/flow_runs/filter", {
        "deployments": {"name": {"any_": ["pmr-margin-call"]}}, "limit": 200,
    })  # fmt: skip
    mine = [r for r in runs if (r.get("parameters") or {}).get("margin_call_id") == call_id]
    marks |= {"runs": float(len(mine)), "created": None, "pending": None, "running": None}
    if mine:
        run = mine[0]
        marks["created"] = _ts(run["created"])
        for state in _api(api, f"/flow_run_states/?flow_run_id={run['id']}"):
            kind = str(state["type"]).lower()
            if kind in ("pending", "running") and marks.get(kind) is None:
                marks[kind] = _ts(state["timestamp"])
    return marks


def _store_marks(engine: Any, call_id: str) -> dict[str, Any]:
    from sqlmodel import Session, col, select

    from core.ledger.tables import AuditEventRow, MarginCallRow, TransferRow

    with Session(engine) as s:
        call = s.get(MarginCallRow, call_id)
        legs = s.exec(
            select(TransferRow)
            .where(TransferRow.margin_call_id == call_id)
            .where(col(TransferRow.sent_at).is_not(None))
            .order_by(col(TransferRow.sent_at))
        ).all()
        plan = s.exec(
            select(AuditEventRow)
            .where(AuditEventRow.margin_call_id == call_id)
            .where(AuditEventRow.kind == "PlanMade")
            .order_by(col(AuditEventRow.seq))
        ).first()
    if call is None:
        raise SystemExit(f"margin call {call_id} is not in the store")
    first = legs[0] if legs else None
    return {
        "status": call.status,
        "pool": call.pool_id,
        "raised": _ts(call.raised_at),
        "plan": None if plan is None else plan.ts_event / 1e9,
        "sent": None if first is None else _ts(first.sent_at),
        "answer_ms": None if first is None else first.latency_ms,
        "legs": len(legs),
    }


def _wait_closed(engine: Any, call_id: str, log: Path) -> None:
    from sqlmodel import Session

    from core.ledger.tables import MarginCallRow

    deadline = time.monotonic() + CLOSED_S
    while time.monotonic() < deadline:
        with Session(engine) as s:
            row = s.get(MarginCallRow, call_id)
            if row is not None and row.status != "open":
                return
        time.sleep(0.25)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise SystemExit(f"margin call {call_id} still open after {CLOSED_S:g} s; serve log:\n{tail}")


def _phases(store: dict[str, Any], pf: dict[str, float | None]) -> dict[str, float | None]:
    """Milliseconds between consecutive marks (``None`` where a mark is missing)."""
    order = [("raised", store["raised"]), ("occurred", pf["occurred"]),
             ("received", pf["received"]), ("created", pf["created"]),
             ("pending", pf["pending"]), ("running", pf["running"]), ("plan", store["plan"]),
             ("sent", store["sent"])]  # fmt: skip
    out: dict[str, float | None] = {}
    for phase, ((_, a), (_, b)) in zip(PHASES, pairwise(order), strict=True):
        out[phase] = None if a is None or b is None else round((b - a) * 1e3, 1)
    total = None if store["sent"] is None else round((store["sent"] - store["raised"]) * 1e3, 1)
    out["total"] = total
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process_group(proc, ((signal.SIGINT, 60), (signal.SIGKILL, 10)))


def run_trigger(calls: int) -> dict[str, Any]:
    """Run ``calls`` triggered margin calls (plus a warm-up) and summarise them."""
    if not 1 <= calls <= 10:
        raise SystemExit("--calls must be 1..10 with --trigger (the desk's free collateral)")
    home = Path(tempfile.mkdtemp(prefix="pmr-bench-trigger-"))
    log = home / "serve.log"
    db_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PREFECT_DB}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PMR_"))}
    env = base | {
        "PMR_HOME": str(home), "PMR_SIM_SECRET": SECRET, "PYTHONUNBUFFERED": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
    }  # fmt: skip
    _pg(f"DROP DATABASE IF EXISTS {PREFECT_DB} WITH (FORCE)")
    _pg(f"CREATE DATABASE {PREFECT_DB}")
    serve: subprocess.Popen[bytes] | None = None
    try:
        with log.open("wb") as out:
            serve = subprocess.Popen(
                [*PMR, "serve", "--desk", str(DESK), "--only", "pmr-margin-call"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
            )  # fmt: skip
        t_start = time.monotonic()
        seen = _wait_ready(serve, log)
        ready_s = time.monotonic() - t_start
        sim, api = seen["simulated venues"], seen["Prefect API"]
        return _calls(calls, home, log, sim, api, env) | {"serve_ready_s": round(ready_s, 1)}
    finally:
        if serve is not None:
            _stop(serve)
        _pg(f"DROP DATABASE IF EXISTS {PREFECT_DB} WITH (FORCE)")


def _calls(
    calls: int, home: Path, log: Path, sim: str, api: str, env: dict[str, str]
) -> dict[str, Any]:
    # This process is the monitor: the same environment as the served runs, then Prefect.
    os.environ.update(env | {"PREFECT_API_URL": api, "PMR_SIM_URL": sim,
                             "PREFECT_LOGGING_LEVEL": "WARNING"})  # fmt: skip
    from core.execution.monitor import monitor_cycle
    from core.venues.sim.control import SimControl
    from flows.monitor_flow import monitor_flow
    from flows.runtime import desk_runtime
    from flows.serving import RUNNER_POLL_S

    ctl = SimControl(sim)
    rt = desk_runtime(str(DESK))  # the monitor flow's own runtime (cached for the process)
    shock = {asset: 0.0 for _, asset, _ in BREACHES}
    rows: list[dict[str, Any]] = []
    try:
        while len(rows) < calls + 1:
            pool, asset, step = BREACHES[len(rows) % len(BREACHES)]
            for _ in range(MAX_STEPS):  # move until a cycle finds a call due (untimed)
                shock[asset] = round(shock[asset] + step, 4)
                for venue in ("sim-a", "sim-b"):
                    ctl.shock(venue, dict(shock))
                if monitor_cycle(rt.cure, engine=rt.engine).due:
                    break
            else:
                raise SystemExit(f"no breach of {pool} after moving {asset} to {shock[asset]:+}")
            result = monitor_flow(desk_file=str(DESK), cycles=1, fast_path=False)
            raised = [str(c["margin_call_id"]) for c in result["calls"] if c.get("created")]
            first_cycle = not rows
            for call_id in raised:
                _wait_closed(rt.engine, call_id, log)
            for call_id in raised:  # two pools can fall due in one cycle: both are measured
                store = _store_marks(rt.engine, call_id)
                pf = _prefect_marks(api, call_id)
                row = {"call": call_id, "pool": store["pool"], "status": store["status"],
                       "shock": dict(shock), "same_cycle": len(raised), "legs": store["legs"],
                       "runs": pf["runs"], "first_answer_ms": store["answer_ms"],
                       "warm_up": first_cycle, **_phases(store, pf)}  # fmt: skip
                print(json.dumps(row), file=sys.stderr)
                if row["total"] is None or row["runs"] != 1:
                    raise SystemExit(f"call {call_id}: no leg sent by one triggered run: {row}")
                rows.append(row)
    finally:
        ctl.close()
    timed = [r for r in rows if not r["warm_up"]]
    totals = [float(r["total"]) for r in timed]
    phases = {k: round(statistics.median(float(r[k]) for r in timed if r[k] is not None), 1)
              for k in PHASES}  # fmt: skip
    return {
        "mode": "trigger",
        "escalated": sum(r["status"] != "cured" for r in timed),
        "same_cycle_calls": sum(r["same_cycle"] > 1 for r in timed),
        "calls": len(timed),
        "p50_ms": round(statistics.median(totals), 1),
        "p95_ms": round(_pct(totals, 0.95), 1),
        "max_ms": round(max(totals), 1),
        "phase_p50_ms": phases,
        "dominant_phase": max(phases, key=lambda k: phases[k]),
        "runner_poll_s": RUNNER_POLL_S,
        "prefect_db": "postgresql",
        "bytecode_compiled": _bytecode_compiled(),
        "target_p50_ms": TARGET_S * 1e3,
    }
