"""A bounded log of the HTTP requests a venue client sent (or a simulated venue answered).

Why bounded: the adapter (``CcxtVenue``) and the simulator's dialect each note every request's
``(method, path)``. A monitor that reads every venue every 15 s sends ~16 requests per venue
per cycle; a plain list grew by ~9 KB per cycle, without end (``benchmarks/monitor.py``
measured it). :class:`RequestLog` keeps the **exact lifetime counts** per ``(method, path)``
(bounded by the number of endpoints, not of requests) and only the **last** ``maxlen``
requests in order, each a reference to one shared tuple per endpoint.

It answers what the tests and diagnostics ask of a list: ``len`` (every request ever noted),
``count``, ``in``, and indexing by the request's absolute position (``log[-1]``,
``log[n_before:]`` to see what one call sent). A position that has left the window raises
``IndexError`` saying so, rather than answering with a wrong request.

Examples
--------
>>> log = RequestLog(maxlen=2)
>>> for path in ("/api/v3/time", "/api/v3/account", "/api/v3/account"):
...     log.append(("GET", path))
>>> len(log), log.count(("GET", "/api/v3/account")), log[-1], list(log)
(3, 2, ('GET', '/api/v3/account'), [('GET', '/api/v3/account'), ('GET', '/api/v3/account')])
>>> ("GET", "/api/v3/time") in log
True
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from typing import overload

__all__ = ["REQUEST_LOG_MAXLEN", "RequestLog"]

#: Requests kept in order (about 4 minutes of a 2-venue monitor cycling every second).
REQUEST_LOG_MAXLEN = 4096

Request = tuple[str, str]


class RequestLog:
    """``(method, path)`` of every request: lifetime counts, the last ``maxlen`` in order."""

    __slots__ = ("_counts", "_keys", "_maxlen", "_recent", "_total")

    def __init__(self, maxlen: int = REQUEST_LOG_MAXLEN) -> None:
        if maxlen < 1:
            raise ValueError(f"RequestLog maxlen must be >= 1, got {maxlen}")
        self._maxlen = maxlen
        self._keys: dict[Request, Request] = {}
        self._counts: Counter[Request] = Counter()
        self._recent: deque[Request] = deque(maxlen=maxlen)
        self._total = 0

    @property
    def maxlen(self) -> int:
        """How many of the latest requests are kept in order."""
        return self._maxlen

    def append(self, request: Request) -> None:
        """Note one request."""
        # One tuple per endpoint, shared by every slot of the window: a slot costs a pointer.
        request = self._keys.setdefault(request, request)
        self._counts[request] += 1
        self._recent.append(request)
        self._total += 1

    def count(self, request: Request) -> int:
        """How many times ``request`` was noted, ever."""
        return self._counts[request]

    def __contains__(self, request: object) -> bool:
        return request in self._counts

    def __len__(self) -> int:
        return self._total

    def __iter__(self) -> Iterator[Request]:
        """The requests still in the window, oldest first."""
        return iter(self._recent)

    def _position(self, index: int) -> int:
        """The window position of absolute ``index`` (negative: from the end)."""
        absolute = index + self._total if index < 0 else index
        first = self._total - len(self._recent)
        if not 0 <= absolute < self._total:
            raise IndexError(f"request {index} out of range: {self._total} noted")
        if absolute < first:
            raise IndexError(
                f"request {index} has left the log: only the last {self.maxlen} are kept"
            )
        return absolute - first

    @overload
    def __getitem__(self, index: int) -> Request: ...

    @overload
    def __getitem__(self, index: slice) -> list[Request]: ...

    def __getitem__(self, index: int | slice) -> Request | list[Request]:
        if isinstance(index, int):
            return self._recent[self._position(index)]
        start, stop, step = index.indices(self._total)
        if step != 1:
            raise ValueError("RequestLog slices take no step")
        if stop <= start:
            return []
        lo = self._position(start)
        return list(self._recent)[lo : lo + (stop - start)]

    def __repr__(self) -> str:
        return f"RequestLog({self._total} noted, {len(self._recent)} kept, maxlen={self.maxlen})"
