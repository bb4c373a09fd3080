"""The machinery under :class:`~core.venues.ccxt_venue.CcxtVenue`: call runners, warm-up, clock.

:class:`CcxtCore` owns how every request is run, so the venue class above it reads as domain
methods only:

- ``_read``: our retry policy for reads (transient errors retry with backoff from the injected
  clock, a ``-1021`` re-syncs the clock and retries once), within the caller's deadline;
- ``_write``: exactly one request, never retried, refused before anything is sent unless the
  adapter is warm; an answer it cannot read (no JSON, no id) is ``OutcomeUnknown``, never a
  refusal a caller might resend;
- ``warm_up``: clock offset first (so even the first signed request is on the venue's time),
  then markets and currencies, then the venue's transfer precision against the desk's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal, TypeVar

from core.clock import Clock
from core.domain import Asset, WalletKind
from core.errors import (
    ConfigError,
    DataError,
    OutcomeUnknown,
    RateBudgetExhausted,
    RateLimited,
    VenueError,
    VenueFatal,
    VenueNotReady,
)
from core.venues.base import BaseVenue
from core.venues.capabilities import EXCHANGE_CAPABILITIES
from core.venues.ccxt_plumbing import CallState, install_hooks, venue_call
from core.venues.errors import ClockSkewRejected, api_family, is_retryable, translate_ccxt_errors
from core.venues.parse_writes import AssetSteps, parse_asset_steps
from core.venues.ratelimit import WeightLimiter
from core.venues.reports import VenueCapabilities, WarmUpReport
from core.venues.reqlog import RequestLog
from core.venues.wallets import BINANCE_TRANSFER_TYPES

__all__ = ["BINANCE_REQUIRED_HAS", "CcxtCore"]

T = TypeVar("T")
R = TypeVar("R")

# ccxt ``has`` keys a Binance venue must offer (checked by ``check_capabilities``).
BINANCE_REQUIRED_HAS: tuple[str, ...] = (
    "fetchBalance",
    "fetchPositions",
    "transfer",
    "fetchTransfers",
    "fetchConvertQuote",
    "createConvertTrade",
    "withdraw",
    "fetchDeposits",
    "fetchDepositAddress",
)


class CcxtCore(BaseVenue):
    """Request runners, clock and warm-up for a venue reached through a ccxt exchange.

    Parameters
    ----------
    name
        Venue name from the desk config.
    exchange
        A configured ``ccxt.binance`` (credentials, URLs and session already set).
    clock
        Injected clock: ccxt's timestamps, the limiter's waits and receipts all use it.
    asset_decimals
        The desk's transfer precision per asset.
    weight_limits_per_min
        Weight budget per API family for the limiter (Binance request weight per minute).
    portfolio_margin
        The account is a Binance Portfolio Margin account: margin/UM/CM are read via ``papi``.
    max_read_attempts
        Attempts for reads on transient errors (writes: always exactly one).
    excess_decimals, lookup_window_s
        See :class:`~core.venues.base.BaseVenue`.
    """

    def __init__(
        self,
        name: str,
        exchange: Any,
        clock: Clock,
        *,
        asset_decimals: Mapping[str, int],
        weight_limits_per_min: Mapping[str, int],
        portfolio_margin: bool = False,
        max_read_attempts: int = 3,
        excess_decimals: Literal["round_down", "refuse"] = "round_down",
        lookup_window_s: float = 120.0,
    ) -> None:
        super().__init__(
            name,
            clock,
            asset_decimals=asset_decimals,
            excess_decimals=excess_decimals,
            lookup_window_s=lookup_window_s,
        )
        self._ex = exchange
        self.portfolio_margin = portfolio_margin
        self._max_read_attempts = max_read_attempts
        self.limiter = WeightLimiter(clock, weight_limits_per_min, venue=name)
        self._weight_limits = dict(weight_limits_per_min)
        self.http_requests = 0
        self.clock_syncs = 0
        self.request_log = RequestLog()  # bounded: a monitor reads all day
        self._steps: dict[str, AssetSteps] | None = None  # set by warm_up
        self._headers = install_hooks(exchange, clock, self.limiter, self._on_request)

    def _on_request(self, method: str, path: str) -> None:
        self.http_requests += 1
        self.request_log.append((method, path))

    def __repr__(self) -> str:
        # Never the exchange object's credentials: name, exchange id and account kind only.
        return (
            f"{type(self).__name__}(name={self.name!r}, exchange={self._ex.id!r}, "
            f"portfolio_margin={self.portfolio_margin}, warm={self.is_warm})"
        )

    @property
    def exchange(self) -> Any:
        """The underlying ccxt exchange (for contract tests and diagnostics only)."""
        return self._ex

    @property
    def capabilities(self) -> VenueCapabilities:
        caps = EXCHANGE_CAPABILITIES[str(self._ex.id)]
        wallets = frozenset(WalletKind) - (
            frozenset() if self.portfolio_margin else caps.pm_wallets
        )
        return VenueCapabilities(
            exchange=str(self._ex.id),
            transfer_types=frozenset(BINANCE_TRANSFER_TYPES.values()),
            wallets=wallets,
            required_ccxt_has=BINANCE_REQUIRED_HAS,
            weight_limits_per_min=self._weight_limits,
            asset_decimals=dict(self._asset_decimals),
            conversion_wallets={m.value: ws for m, ws in caps.conversion_wallets.items()},
            route_kinds=caps.route_kinds,
            portfolio_margin=self.portfolio_margin,
        )

    def check_capabilities(self) -> None:
        """Fail fast if the ccxt exchange lacks a method pmr needs (``pmr config check``)."""
        missing = [k for k in BINANCE_REQUIRED_HAS if not self._ex.has.get(k)]
        if missing:
            raise VenueFatal(
                "the ccxt exchange lacks required methods", venue=self.name, missing=missing
            )

    # -- the venue's clock ---------------------------------------------------------------------
    @property
    def time_difference_ms(self) -> int:
        """Desk clock minus venue clock, in ms, as last measured (ccxt ``timeDifference``)."""
        return int(self._ex.options.get("timeDifference") or 0)

    def _venue_offset_ns(self) -> int:
        return self.time_difference_ms * 1_000_000

    def sync_clock(self, family: str = "api", *, ts_deadline_ns: int | None = None) -> int:
        """Measure the desk-minus-venue clock offset and make ccxt sign with venue time.

        Reads ``serverTime`` from the family's own time endpoint (``/api/v3/time``,
        ``/fapi/v1/time``, ``/dapi/v1/time``; wallet, PM and options requests are checked
        against the spot cluster's) and stores ``desk_ms − serverTime`` in ccxt's
        ``options['timeDifference']``, exactly as ccxt's ``load_time_difference()`` does;
        ccxt's ``nonce()`` then stamps every signed request ``milliseconds() −
        timeDifference``. (ccxt's ``fetch_time`` can only reach ``/dapi/v1/time`` with a
        ``subType`` parameter it also sends to the venue, so the endpoint is called here.)

        Returns the new offset in ms (positive: the desk's clock is ahead).
        """
        match family:
            case "fapi":
                endpoint = self._ex.fapiPublicGetTime
            case "dapi":
                endpoint = self._ex.dapiPublicGetTime
            case _:
                endpoint = self._ex.publicGetTime
        state = CallState(self.name, "sync_clock", False, ts_deadline_ns)
        with (
            venue_call(state),
            translate_ccxt_errors(
                "sync_clock", self.name, is_write=False, response_headers=self._headers
            ),
        ):
            answer = endpoint({})
        server_ms = int(answer["serverTime"])
        offset_ms = int(self._ex.milliseconds()) - server_ms
        self._ex.options["timeDifference"] = offset_ms
        self.clock_syncs += 1
        return offset_ms

    def _resync_after(self, exc: ClockSkewRejected) -> ClockSkewRejected:
        """Re-sync on the family of the refused request; return ``exc`` with the outcome."""
        _, path = self.request_log[-1] if self.request_log else ("GET", "/api/v3/time")
        try:
            offset_ms = self.sync_clock(api_family(path))
        except VenueError as sync_exc:
            return ClockSkewRejected(
                exc.message, **{**exc.context, "resynced": False, "resync_error": str(sync_exc)}
            )
        return ClockSkewRejected(
            exc.message, **{**exc.context, "resynced": True, "time_difference_ms": offset_ms}
        )

    # -- warm-up and precision ------------------------------------------------------------------
    @property
    def is_warm(self) -> bool:
        """Whether ``warm_up`` has loaded what writes and ``prepare_amount`` need."""
        return self._steps is not None

    def warm_up(self, *, ts_deadline_ns: int | None = None) -> WarmUpReport:
        """Load everything a write needs, at start, so no write ever loads it implicitly.

        1. the clock offset (``sync_clock``), so the first signed request is on venue time;
        2. markets and currencies (``load_markets``: ``/api/v3/exchangeInfo``,
           ``/sapi/v1/capital/config/getall`` ...);
        3. the venue's amount step per coin (``withdrawIntegerMultiple`` of the default network),
           checked against the desk's ``decimals``.

        A timeout here is a read failure (``VenueUnavailable``, retried inside): it can never
        mark a write unknown. Call it again after an error; writes raise ``VenueNotReady``
        until it succeeds.

        Raises
        ------
        ConfigError
            The desk declares more decimals for an asset than the venue's step allows: amounts
            the desk books could not be sent as booked. Names every such asset and both
            precisions.
        """
        self._read(
            "sync_clock",
            lambda: self.sync_clock("api"),
            ts_deadline_ns=ts_deadline_ns,
            needs_markets=False,
        )
        markets = self.load_markets(ts_deadline_ns=ts_deadline_ns)
        currencies = self._ex.currencies or {}
        steps = parse_asset_steps(
            [c["info"] for c in currencies.values() if isinstance(c.get("info"), dict)]
        )
        finer = [
            f"{code}: desk {decimals} decimals, venue step "
            f"{format(steps[code].default_step.normalize(), 'f')} ({steps[code].decimals} decimals)"
            for code, decimals in sorted(self._asset_decimals.items())
            if code in steps and decimals > steps[code].decimals
        ]
        if finer:
            raise ConfigError(
                "the desk's transfer precision is finer than the venue's; lower the asset's "
                "decimals in the desk config: " + "; ".join(finer),
                venue=self.name,
            )
        self._steps = steps
        return WarmUpReport(
            venue=self.name,
            markets=markets,
            time_difference_ms=self.time_difference_ms,
            venue_decimals={
                c: steps[c].decimals for c in sorted(self._asset_decimals) if c in steps
            },
            unlisted=tuple(sorted(c for c in self._asset_decimals if c not in steps)),
        )

    def _venue_step(self, asset: Asset, network: str | None) -> Decimal:
        if self._steps is None:
            raise VenueNotReady(
                "the venue's precision is not loaded: call warm_up() first",
                venue=self.name,
                asset=asset.code,
            )
        steps = self._steps.get(asset.code)
        if steps is None:
            raise DataError("the venue does not list this asset", asset=asset.code, venue=self.name)
        if network is None:
            return steps.default_step
        step = steps.network_steps.get(network)
        if step is None:
            raise DataError(
                "the venue does not list this network for the asset",
                asset=asset.code,
                network=network,
                venue=self.name,
            )
        return step

    def load_markets(self, *, ts_deadline_ns: int | None = None) -> int:
        """Load markets and currencies (``load_markets``); return the number of markets."""
        self._read("load_markets", lambda: None, ts_deadline_ns=ts_deadline_ns)
        return len(self._ex.markets)

    def _ensure_markets(self) -> None:
        if not self._ex.markets:
            self._ex.load_markets()

    # -- call runners ---------------------------------------------------------------------------
    def _read(
        self,
        op: str,
        call: Callable[[], T],
        *,
        ts_deadline_ns: int | None = None,
        needs_markets: bool = True,
        **ctx: object,
    ) -> T:
        """Run a read with our retry policy: transient errors retry with backoff.

        A ``-1021`` (clock skew) re-syncs to the venue's clock and retries at once, once; it
        does not count as a failed attempt. With ``ts_deadline_ns``, neither the limiter nor a
        backoff waits past it: the last error (or ``RateBudgetExhausted``) is raised instead.
        Markets load here, lazily, for reads only.
        """
        attempt = 0
        resynced = False
        while True:
            attempt += 1
            try:
                state = CallState(self.name, op, False, ts_deadline_ns)
                with (
                    venue_call(state),
                    translate_ccxt_errors(
                        op, self.name, is_write=False, response_headers=self._headers, **ctx
                    ),
                ):
                    if needs_markets:
                        self._ensure_markets()
                    return call()
            except ClockSkewRejected as exc:
                if resynced:
                    raise
                synced = self._resync_after(exc)
                if synced.context.get("resynced") is not True:
                    raise synced from exc
                resynced = True
                attempt -= 1
            except RateBudgetExhausted:
                raise  # the deadline is the caller's: never wait past it here
            except VenueError as exc:
                if attempt >= self._max_read_attempts or not is_retryable(exc, is_write=False):
                    raise
                if isinstance(exc, RateLimited):
                    continue  # the limiter paused this family for Retry-After
                backoff_s = 0.5 * 2 ** (attempt - 1)
                now = self._clock.timestamp_ns()
                if ts_deadline_ns is not None and now + round(backoff_s * 1e9) > ts_deadline_ns:
                    raise
                self._clock.sleep(backoff_s)

    def _write(
        self,
        op: str,
        call: Callable[[], R],
        parse: Callable[[R], T],
        *,
        ts_deadline_ns: int | None,
        **ctx: object,
    ) -> T:
        """Run a write exactly once and read its answer; never retried here.

        Refused before anything is sent unless the adapter is warm (``VenueNotReady``). A
        ``-1021`` re-syncs the clock before it is raised, so the caller's resend (after its
        lookup) is stamped on the venue's time. An answer ``parse`` cannot read (no id, missing
        fields) is ``OutcomeUnknown``: the venue may have applied it.
        """
        if not self.is_warm:
            raise VenueNotReady(
                "the adapter is not warmed up: call warm_up() at start; nothing was sent",
                venue=self.name,
                op=op,
                **ctx,
            )
        raw = self._send_write(op, call, ts_deadline_ns, ctx)
        try:
            return parse(raw)
        except (DataError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise OutcomeUnknown(
                "the venue answered the write but the answer lacks what identifies it; it may "
                f"have been applied: look it up by key before any resend ({exc})",
                venue=self.name,
                op=op,
                **ctx,
            ) from exc

    def _send_write(
        self, op: str, call: Callable[[], R], ts_deadline_ns: int | None, ctx: Mapping[str, object]
    ) -> R:
        """Send the write's one request; a ``-1021`` re-syncs (outside the write) and is raised."""
        skew: ClockSkewRejected | None = None
        state = CallState(self.name, op, True, ts_deadline_ns)
        try:
            with (
                venue_call(state),
                translate_ccxt_errors(
                    op, self.name, is_write=True, response_headers=self._headers, **ctx
                ),
            ):
                return call()
        except ClockSkewRejected as exc:
            skew = exc
        # The re-sync is a read: it runs after the write's call state is gone.
        raise self._resync_after(skew) from skew
