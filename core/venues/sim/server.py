"""Loopback HTTP server speaking Binance's REST dialect for one or more simulated venues.

Binds 127.0.0.1 only. Each venue is served under its own path prefix, so an unmodified ccxt
client works once every ``urls['api']`` entry is rewritten from ``https://api.binance.com/sapi/v1``
to ``http://127.0.0.1:PORT/<venue>/sapi/v1`` (see :func:`loopback_api_urls`). A simulated "no
answer" closes the connection without a response: the client sees the request leave and
nothing come back, which is the unknown-outcome case pmr must handle.

The **control endpoint** ``/_control/...`` lets a test in another process steer the faults (see
:mod:`core.venues.sim.control` for the client and ``docs/venues.md`` for the calls). It answers
loopback clients only, like everything here:

- ``GET /_control/faults``: every venue's fault plan (pending faults, holds, ban, lag).
- ``POST /_control/faults`` ``{"venue": ..., "action": ..., ...}``: ``inject`` (``kind``,
  ``path_prefix``, ``method``, ``times``, ``retry_after_s``, ``delay_s``, ``ban_s``,
  ``max_hold_s``; a held kind answers its ``hold_id``), ``ban_ip`` (``seconds``),
  ``lag_transfer_history`` (``seconds``), ``halt_pair`` (``from_wallet``, ``to_wallet``),
  ``halt_venue``, ``skew_desk_clock`` (``offset_s``), ``resume``, ``clear``.
- ``POST /_control/wait`` ``{"venue", "hold_id", "timeout_s"}``: blocks until that hold holds a
  request (``{"held": true}``) or the timeout passes.
- ``POST /_control/faults`` ``{"venue", "action": "shock", "moves": {"ETH": -0.26}}``: move
  the venue's prices from now on (``SimPrices.apply_scenario``: −0.26 is −26 %), so a monitor in
  another process sees a real breach.
- ``POST /_control/release`` ``{"venue", "hold_id" | "all": true, "drop": false}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from core.domain import WalletKind
from core.venues.sim.dialect import BinanceDialect
from core.venues.sim.faults import FaultKind, FaultPlan

CONTROL_PREFIX = "/_control/"
_LOOPBACK = frozenset({"127.0.0.1", "::1"})

__all__ = ["SimHttpServer"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as ccxt's requests session expects
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the dialect keeps its own request log

    def _reply(self, status: int, payload: bytes) -> None:
        self._send(status, "application/json", payload, {})

    def _send(
        self, status: int, content_type: str, payload: bytes, headers: Mapping[str, str]
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client is gone (killed or timed out while held)

    def _control(self, body: str) -> None:
        if self.client_address[0] not in _LOOPBACK:
            self._reply(403, b'{"error":"the control endpoint answers loopback clients only"}')
            return
        try:
            data = json.loads(body) if body else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            status, answer = _control(self.server.dialects, self.command, self.path, data)
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = 400, {"error": str(exc)}
        self._reply(status, json.dumps(answer).encode())

    def _serve(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/", 2)
        venue = parts[1] if len(parts) > 1 else ""
        dialect = self.server.dialects.get(venue)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
            body = self.rfile.read(length).decode() if length else ""
        except (ValueError, UnicodeDecodeError):
            # Binance answers malformed input with -1100; never a dropped connection.
            self._reply(400, b'{"code":-1100,"msg":"Illegal characters found in a parameter."}')
            return
        if url.path.startswith(CONTROL_PREFIX):
            self._control(body)
            return
        if dialect is None:
            self._reply(404, b'{"code":-1,"msg":"unknown venue"}')
            return
        path = "/" + parts[2] if len(parts) > 2 else "/"
        answer = dialect.handle(self.command, path, url.query, body, dict(self.headers.items()))
        if answer.outcome == "no_answer":
            self.close_connection = True
            return  # no status line: the client's request left and nothing came back
        self._send(answer.status, answer.content_type, answer.body_bytes(), answer.headers)

    # http.server dispatches on these names.
    do_GET = _serve  # noqa: N815
    do_POST = _serve  # noqa: N815
    do_DELETE = _serve  # noqa: N815
    do_PUT = _serve  # noqa: N815


def _plan(dialects: Mapping[str, BinanceDialect], data: Mapping[str, object]) -> FaultPlan:
    venue = str(data["venue"])
    if venue not in dialects:
        raise ValueError(f"unknown venue {venue!r}; served: {', '.join(sorted(dialects))}")
    return dialects[venue].engine.faults


def _control(
    dialects: Mapping[str, BinanceDialect], method: str, path: str, data: Mapping[str, object]
) -> tuple[int, dict[str, object]]:
    """Run one control call; ``(HTTP status, JSON answer)``."""
    route = urlsplit(path).path.removeprefix(CONTROL_PREFIX)
    if (method, route) == ("GET", "faults"):
        return 200, {name: d.engine.faults.describe() for name, d in dialects.items()}
    if method != "POST":
        return 404, {"error": f"unknown control call {method} {path}"}
    plan = _plan(dialects, data)
    if route == "wait":
        waited = plan.holds[str(data["hold_id"])]
        return 200, {"held": waited.wait_held(float(str(data.get("timeout_s", 10))))}
    if route == "release":
        drop = bool(data.get("drop", False))
        if data.get("all"):
            return 200, {"released": plan.release_all(drop=drop)}
        plan.holds[str(data["hold_id"])].release(drop=drop)
        return 200, {"released": 1}
    if route != "faults":
        return 404, {"error": f"unknown control call {method} {path}"}
    action = str(data["action"])
    with dialects[str(data["venue"])].engine.lock:
        match action:
            case "inject":
                made = plan.inject(
                    FaultKind(str(data["kind"])),
                    str(data.get("path_prefix", "/")),
                    method=None if data.get("method") is None else str(data["method"]),
                    times=int(str(data.get("times", 1))),
                    retry_after_s=int(str(data.get("retry_after_s", 5))),
                    delay_s=float(str(data.get("delay_s", 30.0))),
                    ban_s=None if data.get("ban_s") is None else int(str(data["ban_s"])),
                    max_hold_s=float(str(data.get("max_hold_s", 60.0))),
                )
                return 200, {"hold_id": None if made is None else made.id}
            case "ban_ip":
                plan.ban_ip(int(str(data["seconds"])))
            case "lag_transfer_history":
                plan.lag_transfer_history(float(str(data["seconds"])))
            case "halt_pair":
                plan.halt_pair(
                    WalletKind(str(data["from_wallet"])), WalletKind(str(data["to_wallet"]))
                )
            case "halt_venue":
                plan.halt_venue()
            case "skew_desk_clock":
                plan.skew_desk_clock(float(str(data["offset_s"])))
            case "shock":
                moves = data.get("moves")
                if not isinstance(moves, dict) or not moves:
                    raise ValueError("shock needs 'moves': {asset: fraction, ...}")
                dialects[str(data["venue"])].engine.prices.apply_scenario(
                    {str(a): float(str(m)) for a, m in moves.items()}
                )
            case "resume":
                plan.resume()
            case "clear":
                plan.clear()
            case _:
                raise ValueError(f"unknown control action {action!r}")
    return 200, {"ok": True}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    dialects: Mapping[str, BinanceDialect]


class SimHttpServer:
    """Serve ``dialects`` (venue name → dialect) on ``127.0.0.1:port`` (0 picks a free port).

    Examples
    --------
    >>> with SimHttpServer({"sim-a": dialect}, port=0) as srv:  # doctest: +SKIP
    ...     print(srv.base_url("sim-a"))
    http://127.0.0.1:54321/sim-a
    """

    HOST = "127.0.0.1"

    def __init__(self, dialects: Mapping[str, BinanceDialect], port: int = 0) -> None:
        self._server = _Server((self.HOST, port), _Handler)
        self._server.dialects = dict(dialects)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def base_url(self, venue: str) -> str:
        return f"http://{self.HOST}:{self.port}/{venue}"

    def start(self) -> SimHttpServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pmr-sim-http", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
