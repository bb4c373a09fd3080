"""End to end: a real Prefect server and ``pmr serve`` in subprocesses, a real breach on the
shared simulator, and the margin-call deployment's run triggered by ``pmr.margin.call``.

``pmr serve --only pmr-margin-call`` starts the store, one simulator for every process, a
Prefect server and the trigger-driven deployment (no schedules: nothing else acts). The test
moves BTC +12 % on the simulator, runs ``pmr monitor --no-fast-path`` once (it records the call
and emits the event, but does not cure), and waits, bounded, until the store says the call is
cured; then it checks the completed run and the audit rows. Every process is torn down, always.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlmodel import Session, select

from core.ledger.store import make_engine
from core.ledger.tables import AuditEventRow, MarginCallRow, TransferRow
from core.venues.sim.control import SimControl
from flows.prefect_server import stop_process_group

ROOT = Path(__file__).resolve().parents[2]
DESK = ROOT / "examples" / "desk.toml"
PMR = [sys.executable, "-c", "from flows.cli import main; main()"]
SECRET = "e2e-sim-secret-0123456789"
READY_S = 300.0  # a Prefect server's first start takes 25-50 s on this machine, more under load
CURED_S = 180.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PMR_"))}
    env |= {"PMR_HOME": str(home), "PMR_SIM_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    return env


def _read_until_ready(proc: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    seen: dict[str, str] = {}
    lines: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        for label in ("simulated venues", "Prefect API"):
            if line.startswith(f"{label}: "):
                seen[label] = line.split(": ", 1)[1].split(" ")[0].strip()
        if "Ctrl-C stops" in line:
            return seen
    raise AssertionError("pmr serve did not become ready:\n" + "\n".join(lines[-20:]))


def _completed_runs(api: str) -> list[dict[str, object]]:
    body = json.dumps({
        "deployments": {"name": {"any_": ["pmr-margin-call"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }).encode()  # fmt: skip
    req = urllib.request.Request(
        f"{api}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as answer:
        runs: list[dict[str, object]] = json.loads(answer.read())
    return runs


def test_breach_on_the_shared_simulator_is_cured_by_the_triggered_deployment(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    serve = subprocess.Popen(
        [*PMR, "serve", "--desk", str(DESK), "--only", "pmr-margin-call"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        seen = _read_until_ready(serve, time.monotonic() + READY_S)
        sim, api = seen["simulated venues"], seen["Prefect API"]
        ctl = SimControl(sim)
        for venue in ("sim-a", "sim-b"):
            ctl.shock(venue, {"BTC": 0.12})  # the options pool (short calls) falls to `call`
        monitor = subprocess.run(
            [*PMR, "monitor", "--desk", str(DESK), "--cycles", "1", "--no-fast-path"],
            env=env | {"PREFECT_API_URL": api, "PMR_SIM_URL": sim},
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert monitor.returncode == 0, monitor.stdout + monitor.stderr
        assert "margin call" in monitor.stdout, monitor.stdout
        engine = make_engine(f"sqlite:///{tmp_path / 'pmr.db'}")
        deadline = time.monotonic() + CURED_S
        call = None
        while time.monotonic() < deadline:
            with Session(engine) as s:
                call = s.exec(select(MarginCallRow)).first()
            if call is not None and call.status != "open":
                break
            time.sleep(1.0)
        assert call is not None, "the monitor recorded no margin call"
        assert call.pool_id == "sim-b.opt"
        assert call.status == "cured", f"call {call.id} is {call.status} after {CURED_S:g} s"
        with Session(engine) as s:
            legs = s.exec(select(TransferRow).where(TransferRow.margin_call_id == call.id)).all()
            events = s.exec(
                select(AuditEventRow).where(AuditEventRow.margin_call_id == call.id)
            ).all()
        engine.dispose()
        assert legs
        assert all(leg.status == "confirmed" for leg in legs)
        kinds = {e.kind for e in events}
        assert {"MarginCallRaised", "PlanMade", "LegConfirmed", "RatioRestored"} <= kinds, kinds
        runs = _completed_runs(api)
        by_call = [r for r in runs if dict(r["parameters"]).get("margin_call_id") == call.id]  # type: ignore[call-overload]
        assert len(by_call) == 1, runs
        assert dict(by_call[0]["parameters"])["trigger"] == "event"  # type: ignore[call-overload]
    finally:
        stop_process_group(serve, ((signal.SIGINT, 60), (signal.SIGKILL, 10)))
