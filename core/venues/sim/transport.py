"""In-process transport: a ``requests`` transport adapter that hands ccxt's HTTP to the dialect.

ccxt's ``Exchange.fetch`` builds the request, signs it and calls ``self.session.request``; we give
the exchange a ``requests.Session`` whose every URL prefix is mounted on :class:`SimTransport`,
so ccxt's own ``fetch``, header handling, JSON parsing and ``handle_errors`` run unchanged and no
socket is ever opened. A simulated "no answer" becomes ``requests.ReadTimeout``, which ccxt turns
into ``RequestTimeout`` exactly as for a real slow venue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from core.venues.sim.dialect import BinanceDialect

__all__ = ["SimTransport", "sim_session"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    418: "I'm a teapot",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class SimTransport(BaseAdapter):
    """Serve requests for ``host`` → dialect; any other host is refused (never the network)."""

    def __init__(self, dialects: Mapping[str, BinanceDialect]) -> None:
        super().__init__()
        self._dialects = dict(dialects)
        self.requests_sent = 0

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        dialect = self._dialects.get(url.netloc)
        if dialect is None:
            raise requests.exceptions.ConnectionError(
                f"simulated transport has no venue at {url.netloc!r}; refusing to send",
                request=request,
            )
        self.requests_sent += 1
        body = request.body
        if isinstance(body, bytes):
            body_text = body.decode()
        elif isinstance(body, str):
            body_text = body
        else:
            body_text = ""
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        answer = dialect.handle(request.method or "GET", url.path, url.query, body_text, headers)
        if answer.outcome == "no_answer":
            raise requests.exceptions.ReadTimeout("simulated: no answer", request=request)
        resp = requests.Response()
        resp.status_code = answer.status
        resp.reason = _REASONS.get(answer.status, "")
        resp._content = answer.body_bytes()
        resp.headers = CaseInsensitiveDict({"Content-Type": answer.content_type, **answer.headers})
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        pass


def sim_session(dialects: Mapping[str, BinanceDialect]) -> tuple[requests.Session, SimTransport]:
    """A session where every http(s) URL goes to ``SimTransport`` (no sockets at all)."""
    session = requests.Session()
    session.trust_env = False
    transport = SimTransport(dialects)
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport
