"""Injectable faults for the simulated exchange: explicit ones for tests, seeded ones for soaks.

Each fault names what the venue does wrong and where (HTTP method and path prefix). They map to
what real Binance does (REST docs, "LIMITS" and "HTTP return codes"):

- ``TIMEOUT_APPLIED``: the request is processed, the answer never arrives (unknown outcome).
- ``TIMEOUT_NOT_APPLIED``: the request is lost before processing; no answer either.
- ``RATE_LIMIT_429``: HTTP 429 with ``Retry-After`` and ``{"code": -1003}``.
- ``BAN_418``: HTTP 418 (IP auto-banned after ignoring 429s) with ``Retry-After``.
- ``INSUFFICIENT_FUNDS``: HTTP 400 ``{"code": -5013}`` whatever the balance.
- ``SERVER_ERROR``: HTTP 503 without a Binance code (execution status unknown for writes).
- ``LATE_APPLY``: the answer never arrives (the client times out) and the venue books the
  request ``delay_s`` later: a lookup inside that gap finds nothing *yet*.
- ``GARBLED_AFTER_APPLY``: the request is processed and the 200 answer is truncated JSON.
- ``HTML_AFTER_APPLY``: the request is processed and a proxy answers 200 with an HTML page.
- ``NO_ID_AFTER_APPLY``: the request is processed and the 200 answer is ``{}`` (no id).

The last three are what a CDN, a proxy or a venue incident returns: the write may have been
applied, but the client cannot read its id, so it is an unknown outcome, never a failure.

Faults with a memory (Binance "LIMITS": "repeatedly violating rate limits and/or failing to back
off after receiving 429s will result in an automated IP ban (HTTP status 418)"):

- ``IP_BAN``: HTTP 418 and the venue bans the IP for ``retry_after_s``: until then **every**
  request, from every client of this venue and on every path, gets 418 with the seconds left in
  ``Retry-After`` (:attr:`FaultPlan.banned_until_ns`, venue time).
- ``RATE_LIMIT_THEN_BAN``: HTTP 429 with ``Retry-After``; any request that arrives before it
  expires earns an ``IP_BAN`` of ``ban_s`` (the venue's ``SimConfig.ban_s`` unless given).
- ``HISTORY_EMPTY``: a history read (transfer, withdrawal, deposit) answers an empty page, as a
  venue whose history service lags or fails open does; ``times`` queries in a row.
- ``HELD_APPLIED`` / ``HELD_NOT_APPLIED``: the venue processes the request (or loses it) and then
  holds the answer until the test releases it (:class:`Hold`): a crash or a timeout can land
  exactly mid-flight. Released, an applied request's real answer goes out (or none, with
  ``drop=True``); a lost one never gets an answer.

A lagging transfer history is a state (:meth:`FaultPlan.lag_transfer_history`): a transfer
appears in ``GET /sapi/v1/asset/transfer`` only ``lag_s`` after it was booked, in venue time.

Transfer halts (per wallet pair or the whole venue) and stale prices are states of the engine,
set through :class:`FaultPlan` as well. So is a **skewed desk clock**
(:meth:`FaultPlan.skew_desk_clock`): the desk's host clock runs ahead of or behind the venue's.
The venue itself keeps true time and enforces Binance's timing rule on every signed request
(``serverTime − recvWindow ≤ timestamp < serverTime + 1000 ms``, else HTTP 400 ``-1021``); the
desk sees the skew through :class:`SkewedClock`, the clock the factory gives a simulated venue's
adapter. Binance spot REST docs, "Timing security"; USDⓈ-M "General Info", "recvWindow".
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from core.clock import Clock, ns_to_datetime
from core.domain import WalletKind

__all__ = ["HELD_KINDS", "Fault", "FaultKind", "FaultPlan", "Hold", "SkewedClock"]


class FaultKind(StrEnum):
    TIMEOUT_APPLIED = "timeout_applied"
    TIMEOUT_NOT_APPLIED = "timeout_not_applied"
    RATE_LIMIT_429 = "rate_limit_429"
    BAN_418 = "ban_418"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    SERVER_ERROR = "server_error"
    LATE_APPLY = "late_apply"
    GARBLED_AFTER_APPLY = "garbled_after_apply"
    HTML_AFTER_APPLY = "html_after_apply"
    NO_ID_AFTER_APPLY = "no_id_after_apply"
    IP_BAN = "ip_ban"
    RATE_LIMIT_THEN_BAN = "rate_limit_then_ban"
    HISTORY_EMPTY = "history_empty"
    HELD_APPLIED = "held_applied"
    HELD_NOT_APPLIED = "held_not_applied"


#: Faults whose answer waits for :meth:`Hold.release`.
HELD_KINDS = frozenset({FaultKind.HELD_APPLIED, FaultKind.HELD_NOT_APPLIED})

_hold_ids = itertools.count(1)


class Hold:
    """One held answer: the request reached the venue, the answer waits for :meth:`release`.

    Thread-safe: the request blocks in its own thread (the caller's, in-process; the server's
    handler thread, over HTTP) while the test waits for :meth:`wait_held` and then releases it,
    possibly after killing the client. ``max_hold_s`` bounds the wait so a forgotten hold cannot
    wedge a test run: past it the answer is dropped (the client sees no answer).

    Examples
    --------
    >>> h = Hold("/sapi/v1/asset/transfer", "POST", applied=True)
    >>> h.state, h.wait_held(timeout_s=0)
    ('armed', False)
    >>> h.release()
    >>> h.state
    'released'
    """

    def __init__(
        self, path_prefix: str, method: str | None, *, applied: bool, max_hold_s: float = 60.0
    ) -> None:
        if max_hold_s <= 0:
            raise ValueError(f"max_hold_s must be > 0, got {max_hold_s}")
        self.id = f"hold-{next(_hold_ids)}"
        self.path_prefix = path_prefix
        self.method = method
        self.applied = applied
        self.max_hold_s = max_hold_s
        self.drop = False
        self.path: str | None = None  # the request held, once one arrived
        self._reached = threading.Event()
        self._released = threading.Event()

    @property
    def state(self) -> str:
        """``armed`` (no request yet), ``held`` (a request waits) or ``released``."""
        if self._released.is_set():
            return "released"
        return "held" if self._reached.is_set() else "armed"

    def wait_held(self, timeout_s: float) -> bool:
        """Block until a request is held (True) or ``timeout_s`` passes (False)."""
        return self._reached.wait(timeout_s)

    def release(self, *, drop: bool = False) -> None:
        """Let the held answer go out; ``drop=True`` sends none (the client sees a timeout)."""
        self.drop = self.drop or drop
        self._released.set()

    def block(self, path: str) -> bool:
        """Called by the venue with the request processed: wait for the release.

        Returns whether the answer goes out (False: dropped, lost, or ``max_hold_s`` passed).
        """
        self.path = path
        self._reached.set()
        released = self._released.wait(self.max_hold_s)
        if not released:
            self.drop = True
            self._released.set()
        return self.applied and not self.drop

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "applied": self.applied,
            "path": self.path,
        }


@dataclass(slots=True)
class Fault:
    """``times`` more requests matching ``method`` and ``path_prefix`` get ``kind``.

    ``retry_after_s`` is the 429/418 ``Retry-After`` (and an ``IP_BAN``'s length); ``delay_s``
    how long after the request a ``LATE_APPLY`` books it; ``ban_s`` the ban a
    ``RATE_LIMIT_THEN_BAN`` earns when ignored (``None``: the venue's ``ban_s``); ``hold`` the
    :class:`Hold` of a ``HELD_*`` fault.
    """

    kind: FaultKind
    path_prefix: str
    method: str | None = None
    times: int = 1
    retry_after_s: int = 5
    delay_s: float = 30.0
    ban_s: int | None = None
    hold: Hold | None = field(default=None, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (
            self.method is None or self.method.upper() == method.upper()
        )


class FaultPlan:
    """The faults a simulated venue will inject, consumed in order.

    Examples
    --------
    >>> plan = FaultPlan()
    >>> plan.inject(FaultKind.TIMEOUT_APPLIED, "/sapi/v1/asset/transfer", method="POST")
    >>> plan.take("POST", "/sapi/v1/asset/transfer").kind
    <FaultKind.TIMEOUT_APPLIED: 'timeout_applied'>
    >>> plan.take("POST", "/sapi/v1/asset/transfer") is None
    True
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self.halted_pairs: set[tuple[WalletKind, WalletKind]] = set()
        self.venue_halted = False
        self.withdrawals_halted = False
        self.desk_clock_skew_ns = 0
        # Venue-time state of the IP ban and of an unexpired strict 429 (see the module doc).
        self.banned_until_ns = 0
        self.retry_until_ns = 0
        self.ban_after_retry_s: int | None = None
        self.history_lag_ns = 0
        self.holds: dict[str, Hold] = {}
        self._random: tuple[random.Random, float, tuple[FaultKind, ...], str, str | None] | None = (
            None
        )

    def inject(
        self,
        kind: FaultKind,
        path_prefix: str,
        *,
        method: str | None = None,
        times: int = 1,
        retry_after_s: int = 5,
        delay_s: float = 30.0,
        ban_s: int | None = None,
        max_hold_s: float = 60.0,
    ) -> Hold | None:
        """Make the next ``times`` matching requests fail with ``kind``.

        A ``HELD_*`` kind returns its :class:`Hold` (``times`` must be 1: one hold, one
        request); other kinds return ``None``.
        """
        kind = FaultKind(kind)
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        if retry_after_s < 1:
            raise ValueError(f"retry_after_s must be >= 1, got {retry_after_s}")
        if ban_s is not None and ban_s < 1:
            raise ValueError(f"ban_s must be >= 1, got {ban_s}")
        hold = None
        if kind in HELD_KINDS:
            if times != 1:
                raise ValueError(f"a held answer holds one request; times must be 1, got {times}")
            hold = Hold(
                path_prefix,
                method,
                applied=kind is FaultKind.HELD_APPLIED,
                max_hold_s=max_hold_s,
            )
            self.holds[hold.id] = hold
        self._faults.append(
            Fault(kind, path_prefix, method, times, retry_after_s, delay_s, ban_s, hold)
        )
        return hold

    def hold(
        self,
        path_prefix: str,
        *,
        method: str | None = None,
        applied: bool = True,
        max_hold_s: float = 60.0,
    ) -> Hold:
        """Hold the answer to the next matching request until :meth:`Hold.release`."""
        kind = FaultKind.HELD_APPLIED if applied else FaultKind.HELD_NOT_APPLIED
        hold = self.inject(kind, path_prefix, method=method, max_hold_s=max_hold_s)
        assert hold is not None
        return hold

    def ban_ip(self, seconds: int) -> None:
        """Ban the IP from the next request on, for ``seconds`` of venue time (HTTP 418)."""
        self.inject(FaultKind.IP_BAN, "/", retry_after_s=seconds)

    def lag_transfer_history(self, seconds: float) -> None:
        """Show a transfer in the venue's transfer history only ``seconds`` after its booking
        (venue time); ``lag_transfer_history(0)`` shows them at once again."""
        if seconds < 0:
            raise ValueError(f"history lag must be >= 0 s, got {seconds}")
        self.history_lag_ns = round(seconds * 1e9)

    def release_all(self, *, drop: bool = False) -> int:
        """Release every hold not yet released; returns how many."""
        waiting = [h for h in self.holds.values() if h.state != "released"]
        for h in waiting:
            h.release(drop=drop)
        return len(waiting)

    def schedule_random(
        self,
        seed: int,
        probability: float,
        kinds: tuple[FaultKind, ...],
        path_prefix: str = "/",
        *,
        method: str | None = None,
    ) -> None:
        """Inject one of ``kinds`` into each matching request with ``probability`` (seeded)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        self._random = (random.Random(seed), probability, kinds, path_prefix, method)

    def take(self, method: str, path: str) -> Fault | None:
        """Consume and return the fault for this request, if any."""
        for i, f in enumerate(self._faults):
            if f.matches(method, path):
                f.times -= 1
                if f.times == 0:
                    del self._faults[i]
                return Fault(
                    f.kind, f.path_prefix, f.method, 1, f.retry_after_s, f.delay_s, f.ban_s, f.hold
                )
        if self._random is not None:
            rng, p, kinds, prefix, only = self._random
            wanted = only is None or only.upper() == method.upper()
            if path.startswith(prefix) and wanted and kinds and rng.random() < p:
                return Fault(rng.choice(kinds), prefix, only)
        return None

    def halt_pair(self, from_wallet: WalletKind, to_wallet: WalletKind) -> None:
        """Refuse transfers from ``from_wallet`` to ``to_wallet`` until resumed."""
        self.halted_pairs.add((WalletKind(from_wallet), WalletKind(to_wallet)))

    def halt_venue(self) -> None:
        """Refuse every transfer, conversion and withdrawal on this venue until resumed."""
        self.venue_halted = True

    def skew_desk_clock(self, offset_s: float) -> None:
        """Make the desk's clock run ``offset_s`` ahead of the venue (negative: behind).

        Only the desk's view of time moves (through :class:`SkewedClock`); the venue keeps true
        time, so signed requests stamped outside its window are refused with ``-1021``.
        ``skew_desk_clock(0)`` puts the desk back on time.
        """
        self.desk_clock_skew_ns = round(offset_s * 1e9)

    def resume(self) -> None:
        """Lift halts, the IP ban and the history lag (pending faults stay)."""
        self.banned_until_ns = 0
        self.retry_until_ns = 0
        self.history_lag_ns = 0
        self.halted_pairs.clear()
        self.venue_halted = False
        self.withdrawals_halted = False

    def pending(self) -> int:
        return sum(f.times for f in self._faults)

    def clear(self) -> None:
        """Forget every pending fault (holds already waiting are released without an answer)."""
        self._faults.clear()
        self._random = None
        self.release_all(drop=True)

    def describe(self) -> dict[str, object]:
        """The plan as JSON-ready data (``GET /_control/faults``)."""
        return {
            "pending": [
                {
                    "kind": f.kind.value,
                    "path_prefix": f.path_prefix,
                    "method": f.method,
                    "times": f.times,
                }
                for f in self._faults
            ],
            "holds": [h.describe() for h in self.holds.values()],
            "banned_until_ns": self.banned_until_ns,
            "retry_until_ns": self.retry_until_ns,
            "history_lag_ns": self.history_lag_ns,
            "halted_pairs": sorted(f"{a.value}->{b.value}" for a, b in self.halted_pairs),
            "venue_halted": self.venue_halted,
            "desk_clock_skew_ns": self.desk_clock_skew_ns,
        }


class SkewedClock:
    """The desk's host clock: a base clock plus the skew a :class:`FaultPlan` injects.

    A real desk whose NTP failed reads a wrong wall clock everywhere (request timestamps,
    receipts, freshness checks); this clock reproduces that for a simulated venue's adapter,
    while waiting (``sleep``) still advances the shared base clock.

    Examples
    --------
    >>> from core.clock import ManualClock
    >>> base, plan = ManualClock(start_ns=10_000_000_000), FaultPlan()
    >>> desk = SkewedClock(base, plan)
    >>> plan.skew_desk_clock(-15)
    >>> (desk.timestamp_ns() - base.timestamp_ns()) / 1e9
    -15.0
    """

    def __init__(self, base: Clock, plan: FaultPlan) -> None:
        self._base = base
        self._plan = plan

    def timestamp_ns(self) -> int:
        return self._base.timestamp_ns() + self._plan.desk_clock_skew_ns

    def now(self) -> datetime:
        return ns_to_datetime(self.timestamp_ns())

    def sleep(self, seconds: float) -> None:
        self._base.sleep(seconds)

    def __repr__(self) -> str:
        return f"SkewedClock({self._base!r}, skew_ns={self._plan.desk_clock_skew_ns})"
