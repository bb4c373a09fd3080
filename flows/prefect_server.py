"""A real Prefect server on loopback, started and stopped by pmr (``pmr serve``, the demo, tests).

Schedules and event triggers run only against a real server, never in Prefect's ephemeral
mode (DESIGN §9). When ``PREFECT_API_URL`` is not set, ``pmr serve`` starts one with
:class:`LocalPrefectServer`: ``prefect server start`` in its own process group on a free
loopback port, its state under ``$PMR_HOME/prefect`` (SQLite) unless
``PREFECT_API_DATABASE_CONNECTION_URL`` names PostgreSQL (production: see docs/flows.md), and
telemetry off. ``start`` waits until ``/api/health`` answers; ``stop`` sends SIGINT, then
SIGTERM, then SIGKILL to the whole group, so no server outlives pmr.

Errors: ``ConfigError`` when the server does not come up in time (its last output lines are in
the message) or exits at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from core.errors import ConfigError

__all__ = [
    "LocalPrefectServer",
    "free_port",
    "prefect_env",
    "stop_process_group",
    "wait_healthy",
]

#: Settings every pmr-started Prefect process gets: no telemetry, no update checks, quiet logs.
QUIET_PREFECT: Mapping[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_CLI_COLORS": "false",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prefect_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a pmr-started Prefect process: ``base`` (default ``os.environ``)
    plus ``PREFECT_HOME`` under ``home`` and :data:`QUIET_PREFECT` (where not already set)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PREFECT_HOME", str(home / "prefect"))
    for k, v in QUIET_PREFECT.items():
        env.setdefault(k, v)
    return env


def wait_healthy(
    api_url: str, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``<api_url>/health`` until it answers 200; raise ``ConfigError`` after ``timeout_s``
    or as soon as ``proc`` (the server, when we started it) has exited."""
    deadline = time.monotonic() + timeout_s
    url = api_url.rstrip("/") + "/health"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ConfigError("the Prefect server exited at start", exit_code=proc.returncode)
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"the Prefect server did not answer within {timeout_s:g} s", url=url)
        time.sleep(0.25)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when pmr dies (even by SIGKILL),
    so no Prefect server outlives the process that started it. A no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process_group(
    proc: subprocess.Popen[Any], steps: Sequence[tuple[signal.Signals, float]]
) -> None:
    """Stop ``proc``'s process group (started with ``start_new_session=True``): send each
    step's signal to the whole group and wait up to its seconds for ``proc`` to exit, until it
    has. A process already gone is left alone."""
    if proc.poll() is not None:
        return
    for sig, wait_s in steps:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class LocalPrefectServer:
    """``prefect server start`` on ``127.0.0.1:<port>`` for as long as the ``with`` block runs.

    ``api_url`` is ``http://127.0.0.1:<port>/api`` and ``ui_url`` the UI's address. The
    server's output goes to ``<home>/prefect/server.log`` (read it when something fails).
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.home = home
        self.port = port or free_port()
        self.env = prefect_env(home, env)
        # The UI asks its API at PREFECT_UI_API_URL, which otherwise defaults to port 4200:
        # on any other port every UI page would say it cannot reach the server.
        self.env["PREFECT_UI_API_URL"] = self.api_url
        self.env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
        self.env["PREFECT_SERVER_API_PORT"] = str(self.port)
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self.env["PREFECT_HOME"]) / "server.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalPrefectServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = self.log_path.open("ab")
        cmd = [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        try:
            wait_healthy(self.api_url, timeout_s=self.startup_timeout_s, proc=self.proc)
        except ConfigError as exc:
            tail = self.log_tail()
            self.stop()
            raise ConfigError(f"{exc}; its last output: {tail}") from None
        return self

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no output)"
        return " | ".join(text[-lines:]) or "(no output)"

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the server's whole process group: SIGINT, SIGTERM, then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(
                proc,
                ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)),
            )

    def __enter__(self) -> LocalPrefectServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
