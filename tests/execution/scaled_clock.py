"""A wall clock that runs ``factor`` times faster from a shared origin, so several processes
(the simulator's server and the executor workers) agree on one fast time base."""

from __future__ import annotations

import time
from datetime import datetime

from core.clock import ns_to_datetime


class ScaledClock:
    def __init__(self, origin_ns: int, real_origin_ns: int, factor: float) -> None:
        self.origin_ns, self.real_origin_ns, self.factor = origin_ns, real_origin_ns, factor

    def timestamp_ns(self) -> int:
        return self.origin_ns + round((time.time_ns() - self.real_origin_ns) * self.factor)

    def now(self) -> datetime:
        return ns_to_datetime(self.timestamp_ns())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.factor)
