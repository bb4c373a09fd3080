"""The request logs of the adapter and the simulator stay bounded however long they run.

A monitor reads every venue every cycle; both ``CcxtVenue.request_log`` and the simulator's
``BinanceDialect.request_log`` used to be plain lists that grew by one tuple per request for
ever (``benchmarks/monitor.py`` saw ~9 KB per cycle). They now keep exact lifetime counts and
only the latest requests in order.
"""

from __future__ import annotations

import pytest

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import WalletKind
from core.venues.factory import DeskVenues
from core.venues.reqlog import REQUEST_LOG_MAXLEN, RequestLog
from core.venues.state import read_desk_state

TIME = ("GET", "/api/v3/time")
ACCOUNT = ("GET", "/api/v3/account")


def test_request_log_with_more_than_maxlen_keeps_counts_exact_and_only_the_latest() -> None:
    log = RequestLog(maxlen=3)
    for n in range(10):
        log.append(TIME if n % 2 == 0 else ACCOUNT)
    assert len(log) == 10
    assert (log.count(TIME), log.count(ACCOUNT), log.count(("POST", "/x"))) == (5, 5, 0)
    assert list(log) == [ACCOUNT, TIME, ACCOUNT]
    assert log[-1] == ACCOUNT
    assert log[7] == ACCOUNT
    assert log[8] == TIME
    assert log[8:] == [TIME, ACCOUNT]
    assert log[10:] == []
    assert TIME in log
    assert ("POST", "/x") not in log
    with pytest.raises(IndexError, match="left the log: only the last 3"):
        _ = log[0]
    with pytest.raises(IndexError, match="left the log"):
        _ = log[2:]
    with pytest.raises(IndexError, match="out of range: 10 noted"):
        _ = log[10]


def test_request_log_with_repeated_endpoint_shares_one_tuple_per_endpoint() -> None:
    log = RequestLog(maxlen=100)
    for _ in range(100):
        log.append(("GET", "/api/v3/" + "account"))  # a new string each time, as from a URL
    assert len({id(r) for r in log}) == 1


def test_request_log_with_zero_maxlen_is_refused() -> None:
    with pytest.raises(ValueError, match="maxlen must be >= 1, got 0"):
        RequestLog(maxlen=0)


def test_venue_and_simulator_logs_with_many_reads_stay_bounded_and_agree(
    desk: DeskConfig, sims: DeskVenues, clock: ManualClock
) -> None:
    venue, dialect = sims.venues["sim-a"], sims.dialects["sim-a"]
    assert venue.request_log.maxlen == dialect.request_log.maxlen == REQUEST_LOG_MAXLEN
    venue.request_log, dialect.request_log = RequestLog(maxlen=16), RequestLog(maxlen=16)
    for _ in range(20):
        clock.advance(15)
        read_desk_state(desk, sims.venues, clock)
        venue.balances(WalletKind.SPOT)
    sent = venue.http_requests
    assert len(venue.request_log) == len(dialect.request_log) > 16 * 4
    assert len(list(venue.request_log)) == len(list(dialect.request_log)) == 16
    assert list(venue.request_log) == list(dialect.request_log)
    assert venue.request_log.count(ACCOUNT) == dialect.request_log.count(ACCOUNT) >= 20
    assert sent >= len(venue.request_log)
