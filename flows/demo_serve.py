"""``pmr demo --serve``: the demo's breach, live, on a real Prefect server a person can watch.

The serving stack of ``pmr serve`` (:mod:`flows.serving`: store, one shared simulator, a local
Prefect server, the bootstrap) serves the desk's four deployments. Once they are up, a
background thread moves the simulator's prices by the demo's shock and runs ``pmr monitor
--cycles 1 --no-fast-path`` in a child process: the monitor records the margin call and emits
``pmr.margin.call``, and the ``margin-call/pmr-margin-call`` deployment, triggered by that event,
plans and executes the cure. The schedules (reconcile, stress-test, monitor) run as they
would in production. Ctrl-C stops everything that was started.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flows.serving import Stack, serve_desk, serving_stack

__all__ = ["LiveDemo", "breach_and_announce", "run_live_demo"]

#: Seconds between the deployments being served and the shock: the runner's first poll.
SETTLE_S = 3.0


@dataclass
class LiveDemo:
    """What the live demo did (filled by the background thread)."""

    shock: Mapping[str, float]
    lines: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None


def breach_and_announce(stack: Stack, shock: Mapping[str, float]) -> list[str]:
    """Shock every simulated venue, then run the monitor once without its fast path: the
    margin call is recorded and announced, and the triggered deployment cures it.

    Returns the monitor's output lines. Raises ``RuntimeError`` when the monitor fails.
    """
    from core.venues.sim.control import SimControl

    if stack.sim_url is None:
        raise RuntimeError("the live demo needs the shared simulator (a simulated desk)")
    ctl = SimControl(stack.sim_url)
    for v in stack.desk.venues:
        if v.kind == "sim":
            ctl.shock(v.name, dict(shock))
    cmd = [
        sys.executable, "-c", "from flows.cli import main; main()",
        "monitor", "--desk", str(stack.desk_file.resolve()), "--cycles", "1", "--no-fast-path",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the monitor failed: {(done.stderr or done.stdout).strip()[-500:]}")
    return [line for line in done.stdout.splitlines() if line.strip()]


def run_live_demo(
    desk_file: Path,
    shock: Mapping[str, float],
    say: Callable[[str], None],
    *,
    prefect_port: int | None = None,
) -> LiveDemo:
    """Serve the desk, breach it once in the background, keep serving until Ctrl-C."""
    live = LiveDemo(shock)
    with serving_stack(desk_file, prefect_port=prefect_port) as stack:
        for line in stack.lines():
            say(line)

        def breach() -> None:
            try:
                time.sleep(SETTLE_S)
                moves = ", ".join(f"{a} {m:+.0%}" for a, m in shock.items())
                say(f"moving the simulator's prices: {moves}")
                live.lines = breach_and_announce(stack, shock)
                for line in live.lines:
                    say(f"monitor: {line}")
                runs = f"{stack.ui_url}/runs" if stack.ui_url else "the Prefect UI's Runs page"
                say(
                    "pmr.margin.call emitted: the margin-call/pmr-margin-call deployment runs "
                    f"the cure; watch it at {runs} (artifacts: margin-call-plan, "
                    "margin-call-transfers). Ctrl-C stops."
                )
            except Exception as exc:  # shown to the person watching; serving goes on
                live.failed = f"{type(exc).__name__}: {exc}"
                say(f"the live breach failed: {live.failed}")
            finally:
                live.done.set()

        def ready() -> None:
            say(
                "serving reconcile/pmr-reconcile, stress-test/pmr-stress-test, "
                "monitor/pmr-monitor, margin-call/pmr-margin-call"
            )
            threading.Thread(target=breach, name="pmr-demo-breach", daemon=True).start()

        try:
            serve_desk(stack, on_ready=ready)
        except KeyboardInterrupt:
            say("stopped")
    return live
