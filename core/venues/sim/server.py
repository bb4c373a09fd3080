"""Loopback HTTP server speaking Binance's REST dialect for one or more simulated venues.

Binds 127.0.0.1 only. Each venue is served under its own path prefix, so an unmodified ccxt
client works once every ``urls['api']`` entry is rewritten from ``https://api.binance.com/sapi/v1``
to ``http://127.0.0.1:PORT/<venue>/sapi/v1`` (see :func:`loopback_api_urls`). A simulated "no
answer" closes the connection without a response: the client sees the request leave and
nothing come back, which is the unknown-outcome case pmr must handle.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from core.venues.sim.dialect import BinanceDialect

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
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

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
        if dialect is None:
            self._reply(404, b'{"code":-1,"msg":"unknown venue"}')
            return
        path = "/" + parts[2] if len(parts) > 2 else "/"
        answer = dialect.handle(self.command, path, url.query, body, dict(self.headers.items()))
        if answer.outcome == "no_answer":
            self.close_connection = True
            return  # no status line: the client's request left and nothing came back
        payload = answer.body_bytes()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        for k, v in answer.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # http.server dispatches on these names.
    do_GET = _serve  # noqa: N815
    do_POST = _serve  # noqa: N815
    do_DELETE = _serve  # noqa: N815
    do_PUT = _serve  # noqa: N815


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
