"""``CcxtVenue``: the one adapter between pmr and any exchange, live or simulated.

The live code path is the tested code path: the same class talks to Binance through ccxt, and
offline to the simulated exchange through the *same* ccxt, whose HTTP either goes to an
in-process transport or to a loopback server (:mod:`core.venues.sim`). There is no
``if simulated`` below this line; only the URLs and the ``requests`` session differ.

What the adapter owns (DESIGN §6):

- the wallet mapping: it passes Binance's transfer ``type`` itself (``MAIN_UMFUTURE`` ...), so
  ccxt's isolated-margin fallback for unknown account names can never happen;
- the retry policy: ccxt's own retries are off (``maxRetriesOnFailure = 0``: ccxt would re-send a
  timed-out POST); reads retry here with backoff, writes never;
- the venue's clock: on ``-1021`` (request stamped outside Binance's window) it re-measures the
  offset to the venue's ``serverTime`` into ccxt's own ``options['timeDifference']`` (which
  ccxt's ``nonce()`` subtracts from every signed timestamp) and retries a read once; a write is
  raised as :class:`~core.venues.errors.ClockSkewRejected` for the caller to look up first.
  Times the adapter stamps (receipts, lookup windows, freshness) are on the venue's clock too;
- error classification by URL path and Binance code (:mod:`core.venues.errors`);
- rate limits per API family with Binance weights, honouring 429/418 ``Retry-After``;
- the transfer fields ccxt leaves ``None`` (timestamp, status, amount, wallets) on the receipt;
- the right ccxt params per wallet: COIN-M is ``type='swap', subType='inverse'`` (``type=
  'delivery'`` silently returns *spot*), portfolio margin is ``portfolioMargin=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import ccxt

from core.clock import Clock, ns_to_datetime
from core.domain import Asset, Balance, MarkPrice, WalletKind
from core.errors import (
    DataError,
    OutcomeUnknown,
    RateLimited,
    TransferNotAllowed,
    VenueError,
    VenueFatal,
    VenueRejected,
)
from core.margin.params import Bracket
from core.venues import parse
from core.venues.base import (
    BaseVenue,
    ConvertQuote,
    ConvertResult,
    DepositReport,
    DuplicateIdempotencyKey,
    MarginOrderResult,
    PositionReport,
    TransferHistoryRow,
    VenueCapabilities,
    VenueTransferRequest,
    VenueTransferStatus,
    WithdrawalReceipt,
)
from core.venues.capabilities import EXCHANGE_CAPABILITIES, ConversionMethod
from core.venues.errors import (
    ClockSkewRejected,
    api_family,
    is_retryable,
    translate_ccxt_errors,
)
from core.venues.parse_orders import parse_margin_order
from core.venues.ratelimit import SAPI_UID_FAMILY, WeightLimiter, budget_family, request_weight
from core.venues.wallets import BINANCE_TRANSFER_TYPES

__all__ = ["BINANCE_REQUIRED_HAS", "CcxtVenue", "canonical_path", "rewrite_api_urls"]

T = TypeVar("T")

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

_ACCOUNT_NAME: Mapping[WalletKind, str] = {
    WalletKind.SPOT: "spot",
    WalletKind.FUNDING: "funding",
    WalletKind.MARGIN: "margin",
    WalletKind.UM: "linear",
    WalletKind.CM: "inverse",
    WalletKind.OPTIONS: "option",
    WalletKind.PM: "portfolio_margin",
}


# Binance ``newClientOrderId``: "^[\.A-Z\:/a-z0-9_-]{1,36}$" (spot/margin "New order").
_CLIENT_ORDER_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def _client_order_id(key: str, venue: str) -> str:
    if not isinstance(key, str) or not _CLIENT_ORDER_ID_RE.match(key):
        raise DataError(
            "an order key must be 1-36 characters of A-Z a-z 0-9 . : / _ - (Binance "
            "newClientOrderId)",
            key=key,
            venue=venue,
        )
    return key


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


class _LazyHeaders(Mapping[str, str]):
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


class CcxtVenue(BaseVenue):
    """A venue reached through a ccxt Binance exchange object.

    Parameters
    ----------
    name
        Venue name from the desk config.
    exchange
        A configured ``ccxt.binance`` (credentials, URLs and session already set).
    clock
        Injected clock: ccxt's timestamps, the limiter's waits and receipts all use it.
    asset_decimals
        Transfer precision per asset.
    weight_limits_per_min
        Weight budget per API family for the limiter.
    portfolio_margin
        The account is a Binance Portfolio Margin account: margin/UM/CM are read via ``papi``.
    max_read_attempts
        Attempts for reads on transient errors (writes: always exactly one).

    Examples
    --------
    >>> venue = build_sim_venue(...)  # doctest: +SKIP  (see core.venues.factory)
    >>> venue.balances(WalletKind.SPOT)  # doctest: +SKIP
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
    ) -> None:
        super().__init__(
            name, clock, asset_decimals=asset_decimals, excess_decimals=excess_decimals
        )
        self._ex = exchange
        self.portfolio_margin = portfolio_margin
        self._max_read_attempts = max_read_attempts
        self.limiter = WeightLimiter(clock, weight_limits_per_min)
        self._weight_limits = dict(weight_limits_per_min)
        self.http_requests = 0
        self.clock_syncs = 0
        self._order_keys: set[str] = set()
        self.request_log: list[tuple[str, str]] = []
        self._headers = _LazyHeaders(exchange)
        self._configure_exchange()

    # -- ccxt plumbing ------------------------------------------------------------------------
    def _configure_exchange(self) -> None:
        ex = self._ex
        ex.enableRateLimit = False  # our limiter, with Binance weights, replaces ccxt's
        ex.options["maxRetriesOnFailure"] = 0  # never let ccxt re-send a timed-out POST
        ex.options["maxRetriesOnFailureDelay"] = 0
        # ccxt's own start-up sync (adjustForTimeDifference) runs inside fetch_markets, *after*
        # load_markets has sent the signed /sapi/v1/capital/config/getall, so it cannot save the
        # first signed request; we re-sync on -1021 instead (``sync_clock``), into the same
        # options['timeDifference'] that ccxt's nonce() subtracts.
        ex.options["adjustForTimeDifference"] = False
        ex.options["timeDifference"] = 0
        ex.enableLastResponseHeaders = True
        clock = self._clock
        ex.milliseconds = lambda: clock.timestamp_ns() // 1_000_000
        ex.seconds = lambda: clock.timestamp_ns() // 1_000_000_000
        ex.microseconds = lambda: clock.timestamp_ns() // 1_000
        original_sign = ex.sign
        original_fetch = ex.fetch

        def limited_sign(*args: Any, **kwargs: Any) -> Any:
            # Take the weight *before* the request is stamped, as ccxt's own throttle does in
            # fetch2: a wait for the window after signing would age the timestamp past the
            # venue's recvWindow (-1021). If we waited, sign again with a fresh timestamp.
            request = original_sign(*args, **kwargs)
            method, path = str(request["method"]), canonical_path(str(request["url"]))
            waited_s = self.limiter.acquire(
                budget_family(method, path), request_weight(method, path)
            )
            if waited_s > 0:
                request = original_sign(*args, **kwargs)
            return request

        def limited_fetch(
            url: str, method: str = "GET", headers: Any = None, body: Any = None
        ) -> Any:
            path = canonical_path(url)
            family = budget_family(method, path)
            self.http_requests += 1
            self.request_log.append((method, path))
            try:
                result = original_fetch(url, method, headers, body)
            except ccxt.DDoSProtection:
                retry = self._headers.get("Retry-After")
                self.limiter.pause(family, float(retry) if retry else 60.0)
                raise
            used = self._headers.get(
                "X-SAPI-USED-UID-WEIGHT-1M"
                if family == SAPI_UID_FAMILY
                else "X-SAPI-USED-IP-WEIGHT-1M"
            ) or (None if family == SAPI_UID_FAMILY else self._headers.get("X-MBX-USED-WEIGHT-1M"))
            if used is not None and str(used).isdigit():
                self.limiter.observe_used(family, int(used))
            return result

        ex.sign = limited_sign
        ex.fetch = limited_fetch

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

    def sync_clock(self, family: str = "api") -> int:
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
        with translate_ccxt_errors(
            "sync_clock", self.name, is_write=False, response_headers=self._headers
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

    def _read(self, op: str, call: Callable[[], T], **ctx: object) -> T:
        """Run a read with our retry policy: transient errors retry with backoff.

        A ``-1021`` (clock skew) re-syncs to the venue's clock and retries at once, once; it
        does not count as a failed attempt.
        """
        attempt = 0
        resynced = False
        while True:
            attempt += 1
            try:
                with translate_ccxt_errors(
                    op, self.name, is_write=False, response_headers=self._headers, **ctx
                ):
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
            except VenueError as exc:
                if attempt >= self._max_read_attempts or not is_retryable(exc, is_write=False):
                    raise
                if not isinstance(exc, RateLimited):
                    self._clock.sleep(0.5 * 2 ** (attempt - 1))
                # RateLimited: the limiter already paused this API family for Retry-After.

    def _write(self, op: str, call: Callable[[], T], **ctx: object) -> T:
        """Run a write exactly once; errors are translated, never retried here.

        A ``-1021`` re-syncs the clock before it is raised, so the caller's resend (after its
        lookup) is stamped on the venue's time.
        """
        if not self._ex.markets:
            self.load_markets()  # a read: its own retries and clock re-sync, before the write
        try:
            with translate_ccxt_errors(
                op, self.name, is_write=True, response_headers=self._headers, **ctx
            ):
                return call()
        except ClockSkewRejected as exc:
            raise self._resync_after(exc) from exc

    def _ensure_markets(self) -> None:
        if not self._ex.markets:
            self._ex.load_markets()

    def load_markets(self) -> int:
        """Load markets and currencies (``load_markets``); return the number of markets."""
        self._read("load_markets", lambda: None)
        return len(self._ex.markets)

    # -- raw ccxt calls (venue dicts) ---------------------------------------------------------
    def _ccxt_fetch_balance(self, params: dict[str, Any]) -> Any:
        return self._read("fetch_balance", lambda: self._ex.fetch_balance(params), params=params)[
            "info"
        ]

    def _ccxt_fetch_positions(self, params: dict[str, Any]) -> list[Any]:
        rows = self._read("fetch_positions", lambda: self._ex.fetch_positions(None, params))
        return [r["info"] for r in rows]

    # -- domain reads -------------------------------------------------------------------------
    def balances(self, wallet: WalletKind) -> tuple[Balance, ...]:
        """Balances of one wallet, read with the endpoint Binance uses for it."""
        w = WalletKind.parse(str(wallet), where=f"balances on {self.name}")
        match w:
            case WalletKind.SPOT:
                return parse.parse_spot_balances(
                    self.name, self._ccxt_fetch_balance({"type": "spot"})
                )
            case WalletKind.FUNDING:
                return parse.parse_funding_balances(
                    self.name, self._ccxt_fetch_balance({"type": "funding"})
                )
            case WalletKind.MARGIN | WalletKind.UM | WalletKind.CM if self.portfolio_margin:
                return parse.parse_pm_balances(
                    self.name, w, self._ccxt_fetch_balance({"portfolioMargin": True})
                )
            case WalletKind.PM:
                if not self.portfolio_margin:
                    raise TransferNotAllowed(
                        "venue is not a portfolio-margin account", venue=self.name
                    )
                return parse.parse_pm_balances(
                    self.name, w, self._ccxt_fetch_balance({"portfolioMargin": True})
                )
            case WalletKind.MARGIN:
                return parse.parse_margin_balances(
                    self.name, self._ccxt_fetch_balance({"type": "margin", "marginMode": "cross"})
                )
            case WalletKind.UM:
                return parse.parse_futures_balances(
                    self.name, w, self._ccxt_fetch_balance({"type": "swap", "subType": "linear"})
                )
            case WalletKind.CM:
                # type='delivery' would silently return *spot* balances in ccxt 4.5.90.
                return parse.parse_futures_balances(
                    self.name, w, self._ccxt_fetch_balance({"type": "swap", "subType": "inverse"})
                )
            case WalletKind.OPTIONS:
                info = self._read("fetch_balance", lambda: self._ex.eapiPrivateGetMarginAccount({}))
                return parse.parse_options_balances(self.name, info)
        raise DataError("unhandled wallet kind", wallet=str(w))  # pragma: no cover

    def _margin_assets(self) -> dict[str, str]:
        return {
            str(m["id"]): str(m["settle"]) for m in self._ex.markets.values() if m.get("contract")
        }

    def positions(self, wallet: WalletKind) -> tuple[PositionReport, ...]:
        """Open futures positions of the UM or CM wallet (via papi on a PM account)."""
        w = WalletKind.parse(str(wallet), where=f"positions on {self.name}")
        match w:
            case WalletKind.UM:
                params: dict[str, Any] = {"subType": "linear"}
            case WalletKind.CM:
                params = {"subType": "inverse"}
            case _:
                raise DataError("positions are read from um or cm wallets", wallet=str(w))
        if self.portfolio_margin:
            params["portfolioMargin"] = True
        rows = self._ccxt_fetch_positions(params)
        return parse.parse_positions(self.name, w, rows, self._margin_assets())

    def _premium_index(self, wallet: WalletKind, op: str) -> Any:
        match wallet:
            case WalletKind.UM:
                return self._read(op, lambda: self._ex.fapiPublicGetPremiumIndex({}))
            case WalletKind.CM:
                return self._read(op, lambda: self._ex.dapiPublicGetPremiumIndex({}))
            case _:
                raise DataError("premium index is for um or cm contracts", wallet=str(wallet))

    def funding_rates(self, wallet: WalletKind) -> dict[str, Decimal]:
        """Last funding rate per perpetual of the UM or CM wallet (Binance premiumIndex)."""
        w = WalletKind.parse(str(wallet), where=f"funding rates on {self.name}")
        return parse.parse_funding_rates(self._premium_index(w, "fetch_funding_rates"))

    def mark_prices(
        self, wallet: WalletKind, *, max_age_s: float | None = None
    ) -> tuple[MarkPrice, ...]:
        """Mark and index prices of every UM or CM contract; ``max_age_s`` refuses stale ones."""
        w = WalletKind.parse(str(wallet), where=f"mark prices on {self.name}")
        marks = parse.parse_premium_index(self.name, self._premium_index(w, "fetch_mark_prices"))
        if max_age_s is not None:
            now = ns_to_datetime(self.venue_now_ns())  # marks are stamped by the venue's clock
            for m in marks:
                m.check_fresh(now, max_age_s)
        return marks

    def leverage_brackets(self, wallet: WalletKind) -> Mapping[str, tuple[Bracket, ...]]:
        """Maintenance-margin brackets (Binance leverageBracket) of USDⓈ-M contracts."""
        w = WalletKind.parse(str(wallet), where=f"brackets on {self.name}")
        if w is not WalletKind.UM:
            raise DataError("leverage brackets are implemented for um only", wallet=str(w))
        rows = self._read(
            "fetch_leverage_brackets", lambda: self._ex.fapiPrivateGetLeverageBracket({})
        )
        return parse.parse_leverage_brackets(rows)

    # -- transfers (template hooks) -----------------------------------------------------------
    def _send_transfer(self, intent: VenueTransferRequest) -> tuple[str, VenueTransferStatus]:
        ctx = {
            "asset": intent.asset.code,
            "amount": str(intent.amount),
            "from_wallet": str(intent.from_wallet),
            "to_wallet": str(intent.to_wallet),
            "key": intent.key,
        }
        result = self._write(
            "transfer",
            lambda: self._ex.transfer(
                intent.asset.code,
                str(intent.amount),
                _ACCOUNT_NAME[intent.from_wallet],
                _ACCOUNT_NAME[intent.to_wallet],
                {"type": intent.venue_type},
            ),
            **ctx,
        )
        venue_id = result.get("id") or (result.get("info") or {}).get("tranId")
        if venue_id is None:
            raise DataError("transfer answer has no tranId", venue=self.name, **ctx)
        # ccxt leaves timestamp/status/amount/accounts None for this endpoint: the receipt
        # built by BaseVenue.transfer carries ours instead.
        return str(venue_id), VenueTransferStatus.PENDING

    def _transfer_history(
        self, intent: VenueTransferRequest, start_ns: int, end_ns: int
    ) -> tuple[TransferHistoryRow, ...]:
        rows: list[Any] = []
        page = 1
        while True:
            batch = self._read(
                "fetch_transfers",
                lambda page=page: self._ex.fetch_transfers(  # type: ignore[misc]
                    intent.asset.code,
                    start_ns // 1_000_000,
                    100,
                    {"type": intent.venue_type, "until": end_ns // 1_000_000, "current": page},
                ),
                key=intent.key,
            )
            rows.extend(t["info"] for t in batch)
            if len(batch) < 100:
                break
            page += 1
        return parse.parse_transfer_rows(rows)

    # -- conversions --------------------------------------------------------------------------
    def convert_quote(
        self,
        from_asset: Asset,
        to_asset: Asset,
        from_amount: Decimal,
        wallet: WalletKind = WalletKind.SPOT,
    ) -> ConvertQuote:
        """Ask for a Binance Convert quote (POST /sapi/v1/convert/getQuote) from spot or funding.

        Any other wallet is refused before a request (the exchange's capability record): convert
        collateral in the margin wallet with :meth:`margin_order`.
        """
        problem = EXCHANGE_CAPABILITIES[str(self._ex.id)].swap_problem(
            ConversionMethod.CONVERT, wallet
        )
        if problem is not None:
            raise TransferNotAllowed(problem, venue=self.name, wallet=str(wallet))
        match wallet:
            case WalletKind.SPOT:
                wallet_type = "SPOT"
            case WalletKind.FUNDING:
                wallet_type = "FUNDING"
            case _:  # pragma: no cover - the capability record admits spot and funding only
                raise TransferNotAllowed("no Binance Convert walletType", wallet=str(wallet))
        amount = self.prepare_amount(from_asset, from_amount)
        q = self._read(
            "convert_quote",
            lambda: self._ex.fetch_convert_quote(
                from_asset.code, to_asset.code, str(amount), {"walletType": wallet_type}
            ),
            asset=from_asset.code,
            amount=str(amount),
        )
        info = q["info"]
        return ConvertQuote(
            venue=self.name,
            quote_id=str(info["quoteId"]),
            from_asset=from_asset,
            to_asset=to_asset,
            from_amount=Decimal(str(info["fromAmount"])),
            to_amount=Decimal(str(info["toAmount"])),
            ratio=Decimal(str(info["ratio"])),
            valid_until=ns_to_datetime(int(info["validTimestamp"]) * 1_000_000),
        )

    def accept_quote(self, quote: ConvertQuote) -> ConvertResult:
        """Accept a quote (POST /sapi/v1/convert/acceptQuote): a write, sent once."""
        trade = self._write(
            "accept_quote",
            lambda: self._ex.create_convert_trade(
                quote.quote_id, quote.from_asset.code, quote.to_asset.code, str(quote.from_amount)
            ),
            asset=quote.from_asset.code,
            amount=str(quote.from_amount),
            quote_id=quote.quote_id,
        )
        info = trade["info"]
        return ConvertResult(
            venue=self.name,
            order_id=str(info["orderId"]),
            quote_id=quote.quote_id,
            status=str(info["orderStatus"]),
            from_asset=quote.from_asset,
            to_asset=quote.to_asset,
            from_amount=quote.from_amount,
            to_amount=quote.to_amount,
        )

    # -- margin orders ------------------------------------------------------------------------
    def _margin_market(
        self, from_asset: Asset, to_asset: Asset
    ) -> tuple[str, Literal["BUY", "SELL"]]:
        """The spot/margin market converting ``from_asset`` into ``to_asset``, and the side."""
        for symbol, side in (
            (f"{from_asset.code}/{to_asset.code}", "SELL"),
            (f"{to_asset.code}/{from_asset.code}", "BUY"),
        ):
            market = self._ex.markets.get(symbol)
            if market is not None and market.get("spot"):
                return symbol, "SELL" if side == "SELL" else "BUY"
        raise TransferNotAllowed(
            "no spot/margin market between the two assets",
            venue=self.name,
            from_asset=from_asset.code,
            to_asset=to_asset.code,
        )

    def _margin_params(self, key: str) -> dict[str, Any]:
        # A Portfolio Margin account trades margin through papi; a classic one through sapi.
        mode: dict[str, Any] = (
            {"portfolioMargin": True} if self.portfolio_margin else {"marginMode": "cross"}
        )
        return {**mode, "newClientOrderId": key}

    def margin_order(
        self, from_asset: Asset, to_asset: Asset, from_amount: Decimal, idempotency_key: str
    ) -> MarginOrderResult:
        """Convert inside the cross-margin wallet with one MARKET order, sent once.

        Binance Convert works from spot or funding only; collateral that sits in the margin
        wallet (a Portfolio Margin account's included) is converted by trading it on the
        margin book instead: ``POST /sapi/v1/margin/order`` (``/papi/v1/margin/order`` on a PM
        account), no borrowing. A SELL when ``from_asset`` is the base (DOGE → USDT sells
        DOGEUSDT), a BUY spending ``quoteOrderQty`` when it is the quote. The key goes out as
        ``newClientOrderId``; Binance keeps that unique among *open* orders only, so a filled
        order's key could be reused: an unanswered order (``OutcomeUnknown``) or a ``-1021``
        refusal is looked up with :meth:`lookup_margin_order` before any resend, and a second
        send under a held key raises ``DuplicateIdempotencyKey``.

        Examples
        --------
        >>> venue.margin_order(Asset("DOGE"), Asset("USDT"), Decimal("400000"),
        ...                    "call-7-s2")  # doctest: +SKIP
        """
        key = _client_order_id(idempotency_key, self.name)
        if key in self._order_keys:
            raise DuplicateIdempotencyKey(
                "an order with this key was already sent; look it up instead",
                key=key,
                venue=self.name,
            )
        if not self._ex.markets:
            self.load_markets()
        symbol, side = self._margin_market(from_asset, to_asset)
        amount = self.prepare_amount(from_asset, from_amount)
        params = self._margin_params(key)
        if side == "BUY":
            params["quoteOrderQty"] = str(amount)  # a BUY spends the quote asset

        def call() -> Any:
            if side == "SELL":
                return self._ex.create_order(symbol, "market", "sell", str(amount), None, params)
            return self._ex.create_order(symbol, "market", "buy", None, None, params)

        self._order_keys.add(key)
        try:
            order = self._write(
                "margin_order",
                call,
                asset=from_asset.code,
                to_asset=to_asset.code,
                amount=str(amount),
                key=key,
            )
        except (OutcomeUnknown, ClockSkewRejected):
            raise  # the key stays held: look the order up first
        except VenueError:
            self._order_keys.discard(key)  # refused: nothing traded, the key is free
            raise
        return parse_margin_order(self.name, key, order["info"], from_asset, to_asset)

    def lookup_margin_order(
        self, key: str, from_asset: Asset, to_asset: Asset
    ) -> MarginOrderResult | None:
        """The margin order sent under ``key``, or ``None`` if the venue has none (-2013).

        ``None`` means nothing was traded: :meth:`forget_margin_order` frees the key for a
        resend. Queries ``GET /sapi/v1/margin/order`` (``/papi/v1/margin/order`` on a PM
        account) by ``origClientOrderId``.
        """
        key = _client_order_id(key, self.name)
        if not self._ex.markets:
            self.load_markets()
        symbol, _ = self._margin_market(from_asset, to_asset)
        params = {**self._margin_params(key), "clientOrderId": key}
        del params["newClientOrderId"]
        try:
            order = self._read(
                "lookup_margin_order",
                lambda: self._ex.fetch_order(None, symbol, params),
                key=key,
            )
        except VenueRejected as exc:
            if exc.context.get("binance_code") == -2013:  # NO_SUCH_ORDER
                return None
            raise
        return parse_margin_order(self.name, key, order["info"], from_asset, to_asset)

    def forget_margin_order(self, key: str) -> None:
        """Free a key whose lookup found no order, so it may be sent again."""
        self._order_keys.discard(key)

    # -- cross-venue moves --------------------------------------------------------------------
    def deposit_address(self, asset: Asset, network: str) -> str:
        """This venue's deposit address for ``asset`` on ``network``."""
        res = self._read(
            "deposit_address",
            lambda: self._ex.fetch_deposit_address(asset.code, {"network": network}),
            asset=asset.code,
        )
        return str(res["address"])

    def withdraw(
        self, asset: Asset, amount: Decimal, address: str, network: str, idempotency_key: str
    ) -> WithdrawalReceipt:
        """Withdraw from spot to ``address``; Binance's ``withdrawOrderId`` carries our key."""
        sent = self.prepare_amount(asset, amount)
        t0 = self.venue_now_ns()
        res = self._write(
            "withdraw",
            lambda: self._ex.withdraw(
                asset.code,
                str(sent),
                address,
                {"network": network, "withdrawOrderId": idempotency_key},
            ),
            asset=asset.code,
            amount=str(sent),
            key=idempotency_key,
        )
        return WithdrawalReceipt(
            venue=self.name,
            key=idempotency_key,
            withdrawal_id=str(res["id"]),
            asset=asset,
            amount=sent,
            address=address,
            network=network,
            sent_at=ns_to_datetime(t0),
        )

    def deposits(self, asset: Asset, since: datetime) -> tuple[DepositReport, ...]:
        """Deposits of ``asset`` seen since ``since``; ``credited`` once Binance status is 1."""
        since_ms = int(since.timestamp() * 1000)
        rows = self._read(
            "fetch_deposits",
            lambda: self._ex.fetch_deposits(asset.code, since_ms),
            asset=asset.code,
        )
        out = []
        for r in rows:
            info = r["info"]
            out.append(
                DepositReport(
                    venue=self.name,
                    deposit_id=str(info["id"]),
                    asset=Asset(info["coin"]),
                    amount=Decimal(str(info["amount"])),
                    tx_id=str(info["txId"]),
                    credited=int(info["status"]) == 1,
                    at=ns_to_datetime(int(info["insertTime"]) * 1_000_000),
                )
            )
        return tuple(out)
