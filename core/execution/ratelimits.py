"""Rate-limit tokens for the executor's writes: one limiter per venue per process, and a sliding
window in the store shared by every process (DESIGN §7, issue 14 point 4).

* :class:`ProcessRateGate`: one :class:`~core.venues.ratelimit.WeightLimiter` per venue (all its
  API families) per process, from :func:`process_limiter`, so every execution in the process
  spends the same budget. Waits go through the injected clock; a deadline is never waited past.
* :class:`StoreRateGate`: the same, then the store's ``rate_weight`` rows (one per write:
  venue, family, time in ns, weight). Under a lock (PostgreSQL: a transaction-scoped advisory
  lock per venue and family; SQLite serialises writers) it sums the weights inside the sliding
  window plus a safety margin and books the write only if it fits; otherwise it waits until the
  oldest rows leave the window. So N processes together never exceed the venue's weight per
  window: a storm **queues**. A venue's HTTP 418 ban is written to ``venue_ban`` by whichever
  process receives it (:meth:`StoreRateGate.note_ban`) and honoured by every process before it
  books anything for that venue.

Clocks: every process must share one time base (the host clock; tests give every process the
same scaled clock), since rows carry ns on the writer's clock.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Mapping

from sqlalchemy import Engine, delete, func, text
from sqlmodel import Session, col, select

from core.clock import Clock
from core.errors import DataError, RateBudgetExhausted
from core.ledger.tables import RateWeightRow, VenueBanRow
from core.venues.ratelimit import WeightLimiter

__all__ = [
    "ProcessRateGate",
    "StoreRateGate",
    "banned_until_ns",
    "process_limiter",
    "reset_process_limiters",
]

_LOCK = threading.Lock()
_LIMITERS: dict[str, WeightLimiter] = {}


def process_limiter(
    venue: str, clock: Clock, limits: Mapping[str, int], *, window_s: float = 60.0
) -> WeightLimiter:
    """This process's one limiter for ``venue`` (created on first use with ``limits``)."""
    with _LOCK:
        lim = _LIMITERS.get(venue)
        if lim is None:
            lim = WeightLimiter(clock, limits, window_s=window_s, venue=venue)
            _LIMITERS[venue] = lim
        return lim


def reset_process_limiters() -> None:
    """Forget every process limiter (tests that build several desks in one process)."""
    with _LOCK:
        _LIMITERS.clear()


class ProcessRateGate:
    """Tokens from this process's limiter of each venue (shared by every execution in it).

    Parameters
    ----------
    clock
        Injected clock.
    limits
        Weight per window by venue and family (``{"sim-a": {"sapi-uid": 180000, ...}}``).
    window_s
        The venue's window (Binance: 60 s).
    """

    def __init__(
        self, clock: Clock, limits: Mapping[str, Mapping[str, int]], *, window_s: float = 60.0
    ) -> None:
        self.clock = clock
        self.limits = {v: dict(f) for v, f in limits.items()}
        self.window_s = window_s

    def _limiter(self, venue: str) -> WeightLimiter:
        return process_limiter(
            venue, self.clock, self.limits.get(venue, {}), window_s=self.window_s
        )

    def acquire(self, venue: str, family: str, weight: int, *, ts_deadline_ns: int | None) -> float:
        """Wait for room for ``weight`` in ``venue``'s ``family``; seconds waited."""
        return self._limiter(venue).acquire(family, weight, ts_deadline_ns=ts_deadline_ns)

    def note_ban(self, venue: str, family: str, retry_after_s: float) -> None:
        """A 429/418 said wait ``retry_after_s``: pause the family in this process."""
        self._limiter(venue).pause(family, retry_after_s)


def banned_until_ns(session: Session, venue: str) -> int:
    """When ``venue``'s recorded ban ends (ns; 0 when it never banned us)."""
    row = session.get(VenueBanRow, venue)
    return 0 if row is None else row.banned_until_ns


class StoreRateGate(ProcessRateGate):
    """:class:`ProcessRateGate`, then the store's sliding window and ban registry.

    Parameters
    ----------
    engine
        The ledger store every executor process shares.
    owner
        This process's name, written on its rows (post-mortems).
    margin_s
        Extra seconds a booked weight counts beyond the window: the venue stamps a request a
        little after the store does, so its window lets go of it a little later.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        limits: Mapping[str, Mapping[str, int]],
        *,
        owner: str,
        window_s: float = 60.0,
        margin_s: float = 1.0,
    ) -> None:
        super().__init__(clock, limits, window_s=window_s)
        self.engine = engine
        self.owner = owner
        self._hold_ns = round((window_s + margin_s) * 1e9)
        self.waited_s = 0.0

    def acquire(self, venue: str, family: str, weight: int, *, ts_deadline_ns: int | None) -> float:
        """Wait for room in this process, then in the store; book ``weight``; seconds waited.

        Raises
        ------
        RateBudgetExhausted
            No room (or a ban) before ``ts_deadline_ns``: nothing was booked.
        """
        waited = super().acquire(venue, family, weight, ts_deadline_ns=ts_deadline_ns)
        limit = self.limits.get(venue, {}).get(family)
        if limit is not None and weight > limit:
            raise DataError("one request weighs more than the venue's window", venue=venue,
                            family=family, weight=weight, limit=limit)  # fmt: skip
        start = self.clock.timestamp_ns()
        while True:
            now = self.clock.timestamp_ns()
            ready = self._try_book(venue, family, weight, limit, now)
            if ready is None:
                waited += (now - start) / 1e9
                self.waited_s += (now - start) / 1e9
                return waited
            if ts_deadline_ns is not None and ready > ts_deadline_ns:
                raise RateBudgetExhausted(
                    "the venue's window (all processes) has no room before the deadline; "
                    "nothing was sent",
                    retry_after_s=(ready - now) / 1e9, venue=venue, family=family, weight=weight,
                )  # fmt: skip
            self.clock.sleep(max(0.001, (ready - now) / 1e9))

    def _try_book(
        self, venue: str, family: str, weight: int, limit: int | None, now: int
    ) -> int | None:
        """Book the weight if it fits now (``None``), else return when it may fit (ns)."""
        with Session(self.engine) as s:
            if s.get_bind().dialect.name == "postgresql":
                lock = zlib.crc32(f"pmr.rate\x1f{venue}\x1f{family}".encode()) & 0x7FFFFFFF
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
            else:
                s.execute(
                    text("UPDATE rate_weight SET weight = weight WHERE 0")
                )  # take the write lock
            ban = banned_until_ns(s, venue)
            if ban > now:
                s.rollback()
                return ban
            if limit is not None:
                since = now - self._hold_ns
                s.exec(
                    delete(RateWeightRow).where(col(RateWeightRow.ts_ns) <= since - self._hold_ns)
                )
                rows = s.exec(
                    select(RateWeightRow.ts_ns, RateWeightRow.weight)
                    .where(RateWeightRow.venue_id == venue, RateWeightRow.family == family,
                           col(RateWeightRow.ts_ns) > since)
                    .order_by(col(RateWeightRow.ts_ns))
                ).all()  # fmt: skip
                used = sum(w for _, w in rows)
                if used + weight > limit:
                    s.rollback()
                    for ts, w in rows:
                        used -= w
                        if used + weight <= limit:
                            return ts + self._hold_ns + 1
                    return now + self._hold_ns  # pragma: no cover - the loop always returns
            s.add(
                RateWeightRow(
                    venue_id=venue, family=family, ts_ns=now, weight=weight, owner=self.owner
                )
            )
            s.commit()
            return None

    def note_ban(self, venue: str, family: str, retry_after_s: float) -> None:
        """Record that ``venue`` refuses us for ``retry_after_s`` (a 418, or a 429's wait) so
        every process honours it; also pause this process's limiter."""
        super().note_ban(venue, family, retry_after_s)
        until = self.clock.timestamp_ns() + round(retry_after_s * 1e9)
        with Session(self.engine) as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(
                    text(
                        "INSERT INTO venue_ban (venue_id, banned_until_ns, family, reason) "
                        "VALUES (:v, :u, :f, :r) ON CONFLICT (venue_id) DO UPDATE SET "
                        "banned_until_ns = GREATEST(venue_ban.banned_until_ns, EXCLUDED.banned_until_ns), "
                        "family = EXCLUDED.family, reason = EXCLUDED.reason"
                    ),
                    {
                        "v": venue,
                        "u": until,
                        "f": family[:16] or None,
                        "r": f"retry after {retry_after_s:g} s",
                    },
                )
            else:
                row = s.get(VenueBanRow, venue)
                if row is None:
                    s.add(VenueBanRow(venue_id=venue, banned_until_ns=until, family=family[:16] or None,
                                      reason=f"retry after {retry_after_s:g} s"))  # fmt: skip
                elif row.banned_until_ns < until:
                    row.banned_until_ns = until
                    s.add(row)
            s.commit()

    def used(self, venue: str, family: str) -> int:
        """Weight booked in the store for ``venue``'s ``family`` inside the window now."""
        since = self.clock.timestamp_ns() - self._hold_ns
        with Session(self.engine) as s:
            total = s.exec(
                select(func.coalesce(func.sum(RateWeightRow.weight), 0)).where(
                    RateWeightRow.venue_id == venue, RateWeightRow.family == family,
                    col(RateWeightRow.ts_ns) > since,
                )
            ).one()  # fmt: skip
        return int(total)
