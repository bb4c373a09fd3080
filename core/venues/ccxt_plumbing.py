"""The hooks :class:`~core.venues.ccxt_venue.CcxtVenue` puts into a ccxt exchange object.

Part of the adapter (STYLE rule 2: only the adapter touches ccxt), kept apart so the venue class
reads as domain methods. ccxt calls ``sign()`` then ``fetch()`` for every request; we wrap both:

- ``sign``: take rate-limit weight *before* the request is stamped (a wait after signing would
  age the timestamp past ``recvWindow``), honouring the caller's deadline, and refuse inside a
  write anything but the write's own single request (a ``GET`` there is ccxt loading market
  data implicitly: ``VenueNotReady``, nothing sent);
- ``fetch``: count the request, forget ccxt's copy of the request headers (they carry the API
  key) and signed URL, honour ``Retry-After`` on 429/418, adopt the venue's own weight count,
  and refuse an answer that is not JSON (``ccxt.BadResponse``: HTML from a proxy, a truncated
  body), which the translator turns into ``OutcomeUnknown`` for a write.

The current call (read or write, its deadline, whether its request left) travels in a
``ContextVar``, so concurrent callers on one venue never see each other's deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ccxt

from core.clock import Clock
from core.errors import VenueFatal, VenueNotReady
from core.venues.ratelimit import SAPI_UID_FAMILY, WeightLimiter, budget_family, request_weight

__all__ = [
    "CallState",
    "LazyHeaders",
    "canonical_path",
    "current_call",
    "install_hooks",
    "rewrite_api_urls",
    "venue_call",
]


def canonical_path(url: str) -> str:
    """The Binance path of a URL, without host or simulator prefix (``/sapi/v1/asset/transfer``)."""
    path = urlsplit(url).path
    for marker in ("/api/", "/sapi/", "/fapi/", "/dapi/", "/papi/", "/eapi/"):
        i = path.find(marker)
        if i >= 0:
            return path[i:]
    return path


def rewrite_api_urls(exchange: Any, base_url: str) -> None:
    """Point every ``urls['api']`` entry at ``base_url`` (path kept), then prove none is left.

    Raises
    ------
    VenueFatal
        An entry still names binance.com (a request could leave the machine).
    """
    api = exchange.urls["api"]
    for key, value in list(api.items()):
        if isinstance(value, str):
            api[key] = base_url.rstrip("/") + urlsplit(value).path
    leftovers = [k for k, v in api.items() if not isinstance(v, str) or "binance.com" in v]
    if leftovers:
        raise VenueFatal("API URLs still point at binance.com after rewrite", keys=leftovers)


class LazyHeaders(Mapping[str, str]):
    """The exchange's last response headers, read when an error is being translated."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange

    def _h(self) -> Mapping[str, str]:
        return dict(getattr(self._exchange, "last_response_headers", None) or {})

    def __getitem__(self, key: str) -> str:
        wanted = key.lower()
        for k, v in self._h().items():  # HTTP header names are case-insensitive
            if k.lower() == wanted:
                return str(v)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._h())

    def __len__(self) -> int:
        return len(self._h())


@dataclass(slots=True)
class CallState:
    """One adapter call in flight: what it is, its deadline, and what its requests did."""

    venue: str
    op: str
    is_write: bool
    ts_deadline_ns: int | None = None
    requests: int = 0


_CALL: ContextVar[CallState | None] = ContextVar("pmr_venue_call", default=None)


def current_call() -> CallState | None:
    """The adapter call in flight in this context, if any."""
    return _CALL.get()


@contextmanager
def venue_call(state: CallState) -> Iterator[CallState]:
    """Mark ``state`` as the call in flight for the requests ccxt makes inside the block."""
    token = _CALL.set(state)
    try:
        yield state
    finally:
        _CALL.reset(token)


def _guard_write(state: CallState, method: str, path: str) -> None:
    if method == "GET":
        raise VenueNotReady(
            f"ccxt tried GET {path} inside a write (market data not loaded): call warm_up() "
            "at start; nothing was sent",
            venue=state.venue,
            op=state.op,
        )
    if state.requests:
        raise VenueFatal(
            f"a write tried a second request ({method} {path}); nothing more was sent",
            venue=state.venue,
            op=state.op,
        )


def install_hooks(
    exchange: Any,
    clock: Clock,
    limiter: WeightLimiter,
    on_request: Callable[[str, str], None],
) -> LazyHeaders:
    """Configure ``exchange`` for pmr and wrap its ``sign``/``fetch``; return its header view.

    ccxt's own throttle and retries are off (``enableRateLimit=False``,
    ``maxRetriesOnFailure=0``: ccxt would re-send a timed-out POST); time comes from ``clock``;
    ccxt's start-up clock sync is off (``warm_up`` syncs first instead). ``on_request(method,
    path)`` is told about every request as it leaves.
    """
    ex = exchange
    ex.enableRateLimit = False  # our limiter, with Binance weights, replaces ccxt's
    ex.options["maxRetriesOnFailure"] = 0  # never let ccxt re-send a timed-out POST
    ex.options["maxRetriesOnFailureDelay"] = 0
    # ccxt's own start-up sync (adjustForTimeDifference) runs inside fetch_markets, *after*
    # load_markets has sent the signed /sapi/v1/capital/config/getall; warm_up syncs before it
    # and -1021 re-syncs, into the same options['timeDifference'] that ccxt's nonce() subtracts.
    ex.options["adjustForTimeDifference"] = False
    ex.options["timeDifference"] = 0
    ex.enableLastResponseHeaders = True
    ex.fetchHistoryCacheSize = 0  # ccxt's request cache would keep the API-key header
    ex.milliseconds = lambda: clock.timestamp_ns() // 1_000_000
    ex.seconds = lambda: clock.timestamp_ns() // 1_000_000_000
    ex.microseconds = lambda: clock.timestamp_ns() // 1_000
    headers = LazyHeaders(ex)
    original_sign = ex.sign
    original_fetch = ex.fetch

    def limited_sign(*args: Any, **kwargs: Any) -> Any:
        request = original_sign(*args, **kwargs)
        method, path = str(request["method"]), canonical_path(str(request["url"]))
        state = _CALL.get()
        if state is not None and state.is_write:
            _guard_write(state, method, path)
        waited_s = limiter.acquire(
            budget_family(method, path),
            request_weight(method, path),
            ts_deadline_ns=None if state is None else state.ts_deadline_ns,
        )
        if waited_s > 0:
            request = original_sign(*args, **kwargs)  # re-stamp after the wait
        return request

    def limited_fetch(
        url: str, method: str = "GET", headers_in: Any = None, body: Any = None
    ) -> Any:
        # ccxt kept the request (API-key header, signed URL and body) on the exchange object.
        ex.last_request_headers = ex.last_request_body = ex.last_request_url = None
        path = canonical_path(url)
        family = budget_family(method, path)
        state = _CALL.get()
        if state is not None:
            state.requests += 1
        on_request(method, path)
        try:
            result = original_fetch(url, method, headers_in, body)
        except ccxt.DDoSProtection:
            retry = headers.get("Retry-After")
            limiter.pause(family, float(retry) if retry else 60.0)
            raise
        used = headers.get(
            "X-SAPI-USED-UID-WEIGHT-1M" if family == SAPI_UID_FAMILY else "X-SAPI-USED-IP-WEIGHT-1M"
        ) or (None if family == SAPI_UID_FAMILY else headers.get("X-MBX-USED-WEIGHT-1M"))
        if used is not None and str(used).isdigit():
            limiter.observe_used(family, int(used))
        if not isinstance(result, dict | list):
            kind = headers.get("Content-Type") or "no content type"
            raise ccxt.BadResponse(
                f"{ex.id} {method} {path} answered with a body that is not JSON ({kind}, "
                f"{len(str(result))} characters)"
            )
        return result

    ex.sign = limited_sign
    ex.fetch = limited_fetch
    return headers
