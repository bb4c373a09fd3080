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

Transfer halts (per wallet pair or the whole venue) and stale prices are states of the engine,
set through :class:`FaultPlan` as well. So is a **skewed desk clock**
(:meth:`FaultPlan.skew_desk_clock`): the desk's host clock runs ahead of or behind the venue's.
The venue itself keeps true time and enforces Binance's timing rule on every signed request
(``serverTime − recvWindow ≤ timestamp < serverTime + 1000 ms``, else HTTP 400 ``-1021``); the
desk sees the skew through :class:`SkewedClock`, the clock the factory gives a simulated venue's
adapter. Binance spot REST docs, "Timing security"; USDⓈ-M "General Info", "recvWindow".
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.clock import Clock, ns_to_datetime
from core.domain import WalletKind

__all__ = ["Fault", "FaultKind", "FaultPlan", "SkewedClock"]


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


@dataclass(slots=True)
class Fault:
    """``times`` more requests matching ``method`` and ``path_prefix`` get ``kind``.

    ``retry_after_s`` is the 429/418 ``Retry-After``; ``delay_s`` how long after the request a
    ``LATE_APPLY`` books it.
    """

    kind: FaultKind
    path_prefix: str
    method: str | None = None
    times: int = 1
    retry_after_s: int = 5
    delay_s: float = 30.0

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
    ) -> None:
        """Make the next ``times`` matching requests fail with ``kind``."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self._faults.append(
            Fault(FaultKind(kind), path_prefix, method, times, retry_after_s, delay_s)
        )

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
                return Fault(f.kind, f.path_prefix, f.method, 1, f.retry_after_s, f.delay_s)
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
        self.halted_pairs.clear()
        self.venue_halted = False
        self.withdrawals_halted = False

    def pending(self) -> int:
        return sum(f.times for f in self._faults)


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
