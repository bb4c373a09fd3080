"""Binance request weights and a sliding-window limiter per venue and API family.

Binance counts *request weight* per IP (and per UID for some sapi endpoints) over a rolling
minute, per API family (spot ``api``, wallet ``sapi``, USDⓈ-M ``fapi``, COIN-M ``dapi``, portfolio
margin ``papi``, options ``eapi``), and answers 429 (then 418, an IP ban) when it is exceeded,
with ``Retry-After`` in seconds (Binance spot REST docs, "LIMITS"; USDⓈ-M "General Info").
The weights below are the ones Binance documents for the endpoints pmr calls; endpoints not
listed count 1. The simulator charges the same table, so the adapter's limiter and the venue
agree on what a burst costs.

The limiter never lets the sum of weights sent in any window of ``window_s`` exceed the limit:
``acquire`` waits (through the injected clock) until the oldest sends age out, and a 429/418
pauses the family until ``Retry-After`` has passed. A caller with a deadline never waits past
it: ``acquire(..., ts_deadline_ns=...)`` raises ``RateBudgetExhausted`` (with
``retry_after_s``) before anything is recorded or sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.clock import Clock
from core.errors import RateBudgetExhausted, VenueFatal
from core.venues.errors import api_family

__all__ = [
    "ENDPOINT_WEIGHTS",
    "SAPI_UID_FAMILY",
    "UID_WEIGHTED",
    "WeightLimiter",
    "budget_family",
    "request_weight",
]

# Budget key of the sapi endpoints Binance weighs per account (UID) instead of per IP.
SAPI_UID_FAMILY = "sapi-uid"
# Binance wallet/convert docs mark these "Weight(UID)": they spend the account's UID budget
# (180,000 per minute), not the 12,000 IP budget, so 900-weight transfers are not throttled to
# a dozen a minute.
UID_WEIGHTED: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/sapi/v1/asset/transfer"),
        ("POST", "/sapi/v1/capital/withdraw/apply"),
        ("POST", "/sapi/v1/convert/getQuote"),
        ("POST", "/sapi/v1/convert/acceptQuote"),
        ("GET", "/sapi/v1/convert/orderStatus"),
        ("POST", "/sapi/v1/margin/order"),
    }
)

ENDPOINT_WEIGHTS: Mapping[tuple[str, str], int] = MappingProxyType(
    {
        ("GET", "/api/v3/exchangeInfo"): 20,
        ("GET", "/api/v3/account"): 20,
        ("GET", "/sapi/v1/capital/config/getall"): 10,
        ("GET", "/sapi/v1/margin/allPairs"): 1,
        ("GET", "/sapi/v1/margin/isolated/allPairs"): 10,
        ("GET", "/sapi/v1/margin/account"): 10,
        ("POST", "/sapi/v1/asset/get-funding-asset"): 1,
        ("POST", "/sapi/v1/asset/transfer"): 900,
        ("GET", "/sapi/v1/asset/transfer"): 1,
        ("POST", "/sapi/v1/convert/getQuote"): 200,
        ("POST", "/sapi/v1/convert/acceptQuote"): 500,
        ("GET", "/sapi/v1/convert/orderStatus"): 100,
        ("POST", "/sapi/v1/margin/order"): 6,
        ("GET", "/sapi/v1/margin/order"): 10,
        ("POST", "/papi/v1/margin/order"): 1,
        ("GET", "/papi/v1/margin/order"): 10,
        ("POST", "/sapi/v1/capital/withdraw/apply"): 900,
        ("GET", "/sapi/v1/capital/withdraw/history"): 10,
        ("GET", "/sapi/v1/capital/deposit/hisrec"): 1,
        ("GET", "/sapi/v1/capital/deposit/address"): 10,
        ("GET", "/fapi/v1/exchangeInfo"): 1,
        ("GET", "/fapi/v3/account"): 5,
        ("GET", "/fapi/v3/positionRisk"): 5,
        ("GET", "/fapi/v1/premiumIndex"): 10,
        ("GET", "/fapi/v1/leverageBracket"): 1,
        ("GET", "/dapi/v1/exchangeInfo"): 1,
        ("GET", "/dapi/v1/account"): 5,
        ("GET", "/dapi/v1/positionRisk"): 1,
        ("GET", "/dapi/v1/premiumIndex"): 10,
        ("GET", "/papi/v1/balance"): 20,
        ("GET", "/papi/v1/um/positionRisk"): 5,
        ("GET", "/papi/v1/cm/positionRisk"): 1,
        ("GET", "/eapi/v1/marginAccount"): 3,
        ("GET", "/eapi/v1/exchangeInfo"): 1,
        ("GET", "/eapi/v1/index"): 1,
        ("GET", "/eapi/v1/mark"): 5,
        ("GET", "/eapi/v1/position"): 5,
        ("GET", "/sapi/v1/margin/priceIndex"): 10,
        ("GET", "/papi/v1/um/leverageBracket"): 1,
    }
)


def request_weight(method: str, path: str) -> int:
    """Binance weight of one request (1 when the endpoint is not in the table)."""
    return ENDPOINT_WEIGHTS.get((method.upper(), path), 1)


def budget_family(method: str, path: str) -> str:
    """The weight budget a request spends: its API family, or ``sapi-uid`` for UID-weighted ones.

    >>> budget_family("POST", "/sapi/v1/asset/transfer"), budget_family("GET", "/sapi/v1/margin/account")
    ('sapi-uid', 'sapi')
    """
    if (method.upper(), path) in UID_WEIGHTED:
        return SAPI_UID_FAMILY
    return api_family(path)


@dataclass(slots=True)
class _Window:
    limit: int
    sent: deque[tuple[int, int]] = field(default_factory=deque)
    used: int = 0
    paused_until_ns: int = 0


class WeightLimiter:
    """Sliding-window weight budget per API family for one venue.

    Parameters
    ----------
    clock
        Injected clock; ``acquire`` waits with ``clock.sleep``.
    limits_per_window
        Weight budget per family (``{"sapi": 12000, ...}``); other families are unlimited.
    window_s
        Window length (Binance: one minute).
    venue
        Venue name, for error messages.

    Units: weights are Binance *request weights* (the figures in ``ENDPOINT_WEIGHTS``, summed
    per family over the rolling window), not requests; ``limits_per_window`` are Binance's
    per-minute weight limits (``DEFAULT_WEIGHT_LIMITS_PER_MIN`` in the simulator).

    Examples
    --------
    >>> from core.clock import ManualClock
    >>> lim = WeightLimiter(ManualClock(), {"sapi": 1000})
    >>> lim.acquire("sapi", 900)
    0.0
    >>> lim.acquire("sapi", 900)  # waits until the first send leaves the window
    60.0
    >>> lim.acquire("sapi", 900, ts_deadline_ns=lim.ready_at_ns("sapi", 900) - 1)
    Traceback (most recent call last):
    ...
    core.errors.RateBudgetExhausted: rate budget has no room before the deadline; nothing was sent (...)
    """

    def __init__(
        self,
        clock: Clock,
        limits_per_window: Mapping[str, int],
        *,
        window_s: float = 60.0,
        venue: str = "",
    ) -> None:
        self._clock = clock
        self._venue = venue
        self._window_ns = round(window_s * 1e9)
        self._windows = {fam: _Window(limit) for fam, limit in limits_per_window.items()}
        self.waited_s = 0.0

    def limit(self, family: str) -> int | None:
        w = self._windows.get(family)
        return None if w is None else w.limit

    def _expire(self, w: _Window, now: int) -> None:
        while w.sent and w.sent[0][0] <= now - self._window_ns:
            _, weight = w.sent.popleft()
            w.used -= weight

    def used(self, family: str) -> int:
        w = self._windows.get(family)
        if w is None:
            return 0
        self._expire(w, self._clock.timestamp_ns())
        return w.used

    def ready_at_ns(self, family: str, weight: int, *, now_ns: int | None = None) -> int:
        """When ``weight`` would fit in ``family``'s window (now, if it fits now); no side effect.

        The earliest time at or after any 429/418 pause at which the weights still inside the
        window plus ``weight`` stay within the limit: sends leave the window ``window_s`` after
        they were recorded, oldest first. ``now_ns`` is the caller's reading of the clock (read
        here when omitted): ``acquire`` passes its own, so "ready now" compares one reading with
        itself; two readings of a running clock differ, and ``ready <= now`` would never hold.
        """
        now = self._clock.timestamp_ns() if now_ns is None else now_ns
        w = self._windows.get(family)
        if w is None:
            return now
        t = max(now, w.paused_until_ns)
        live = [(ts, wt) for ts, wt in w.sent if ts > t - self._window_ns]
        used = sum(wt for _, wt in live)
        for ts, wt in live:
            if used + weight <= w.limit:
                break
            t = ts + self._window_ns  # this send leaves the window then
            used -= wt
        return t

    def acquire(self, family: str, weight: int, *, ts_deadline_ns: int | None = None) -> float:
        """Wait until ``weight`` fits in ``family``'s window, record it, return seconds waited.

        Parameters
        ----------
        family
            Budget key (:func:`budget_family`).
        weight
            Binance request weight (:func:`request_weight`).
        ts_deadline_ns
            Latest time (ns on the limiter's clock) the request may leave. If the budget has no
            room before then, :class:`~core.errors.RateBudgetExhausted` is raised at once,
            carrying ``retry_after_s``, and nothing is recorded or waited for. ``None`` waits as
            long as the window needs (at most ``window_s``, or a venue's ``Retry-After``).
        """
        w = self._windows.get(family)
        if w is None:
            return 0.0
        if weight > w.limit:
            raise VenueFatal(
                "one request weighs more than the whole budget; raise the configured limit",
                family=family,
                weight=weight,
                limit=w.limit,
            )
        start = self._clock.timestamp_ns()
        while True:
            now = self._clock.timestamp_ns()
            ready = self.ready_at_ns(family, weight, now_ns=now)
            if ready <= now:
                self._expire(w, now)
                w.sent.append((now, weight))
                w.used += weight
                waited = (now - start) / 1e9
                self.waited_s += waited
                return waited
            if ts_deadline_ns is not None and ready > ts_deadline_ns:
                raise RateBudgetExhausted(
                    "rate budget has no room before the deadline; nothing was sent",
                    retry_after_s=(ready - now) / 1e9,
                    venue=self._venue,
                    family=family,
                    weight=weight,
                    used=self.used(family),
                    limit=w.limit,
                    deadline_in_s=round((ts_deadline_ns - now) / 1e9, 3),
                )
            self._clock.sleep((ready - now) / 1e9)

    def observe_used(self, family: str, used_by_venue: int) -> None:
        """Adopt the venue's own count (``X-MBX-USED-WEIGHT-1M``) when it is higher than ours.

        Other clients on the same IP or account spend the same budget; the venue's header is the
        truth. The difference is booked now, so it ages out of our window a minute later (a
        conservative choice: the venue's older spends may leave its window sooner).
        """
        w = self._windows.get(family)
        if w is None:
            return
        now = self._clock.timestamp_ns()
        self._expire(w, now)
        extra = used_by_venue - w.used
        if extra > 0:
            w.sent.append((now, extra))
            w.used += extra

    def pause(self, family: str, retry_after_s: float) -> None:
        """Honour a 429/418 ``Retry-After``: no request of ``family`` before it has passed."""
        w = self._windows.get(family)
        if w is None:
            return
        until = self._clock.timestamp_ns() + round(retry_after_s * 1e9)
        w.paused_until_ns = max(w.paused_until_ns, until)
