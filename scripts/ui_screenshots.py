"""Screenshots of the Prefect UI during ``pmr demo --serve``, for the README.

Starts ``pmr demo --serve`` (a fresh ``PMR_HOME``), waits until the margin-call deployment's
run triggered by ``pmr.margin.call`` has completed, then takes PNGs with headless Chromium
(Debian's ``chromium`` package: ``apt-get install chromium``) of:

* ``ui-deployments.png``: the four deployments with their schedules and trigger;
* ``ui-margin-call-run.png``: the triggered margin-call run (its task runs, one per leg);
* ``ui-margin-call-artifacts.png``: that run's artifacts (plan and transfers tables).

Then stops the demo (SIGINT to its process group). Run:
``uv run python scripts/ui_screenshots.py [--out docs/img] [--width 1400 --height 900]``.
Prints one JSON object on its last line: the files, the run id, and the seconds each step took.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from flows.prefect_server import stop_process_group  # noqa: E402

PMR = [sys.executable, "-c", "from flows.cli import main; main()"]


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as answer:  # loopback API
        return json.loads(answer.read())


def _triggered_run(api: str) -> dict[str, Any] | None:
    runs = _post(api, "/flow_runs/filter", {
        "deployments": {"name": {"any_": ["pmr-margin-call"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    })  # fmt: skip
    for r in runs:
        if r.get("parameters", {}).get("trigger") == "event":
            return dict(r)
    return None


def _shoot(chromium: str, url: str, out: Path, width: int, height: int) -> None:
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", "--virtual-time-budget=15000",
         f"--screenshot={out}", url],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="pmr-ui-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PMR_"))}
    env |= {"PMR_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    demo = subprocess.Popen(
        [*PMR, "demo", "--serve"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        api = ui = None
        assert demo.stdout is not None
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line and demo.poll() is not None:
                raise SystemExit("pmr demo --serve exited early")
            print(line.rstrip(), file=sys.stderr)
            if line.startswith("Prefect API: "):
                api = line.split(": ", 1)[1].strip()
            if line.startswith("Prefect UI: "):
                ui = line.split(": ", 1)[1].strip()
            if "pmr.margin.call emitted" in line:
                break
        if api is None or ui is None:
            raise SystemExit("pmr demo --serve never announced its Prefect server")
        timings["breach_announced_s"] = round(time.monotonic() - t0, 1)
        run = None
        while time.monotonic() < deadline and run is None:
            run = _triggered_run(api)
            time.sleep(1.0)
        if run is None:
            raise SystemExit("the triggered margin-call run did not complete in time")
        timings["run_completed_s"] = round(time.monotonic() - t0, 1)
        shots = {
            "ui-deployments.png": f"{ui}/deployments",
            "ui-margin-call-run.png": f"{ui}/runs/flow-run/{run['id']}",
            "ui-margin-call-artifacts.png": f"{ui}/runs/flow-run/{run['id']}?tab=Artifacts",
        }
        for name, url in shots.items():
            _shoot(chromium, url, args.out / name, args.width, args.height)
        timings["screenshots_s"] = round(time.monotonic() - t0, 1)
    finally:
        stop_process_group(demo, ((signal.SIGINT, 60), (signal.SIGKILL, 10)))
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({"files": sorted(shots), "run_id": run["id"], **timings}))


if __name__ == "__main__":
    main()
