"""``CcxtVenue``: the one adapter between pmr and any exchange, live or simulated.

The live code path is the tested code path: the same class talks to Binance through ccxt, and
offline to the simulated exchange through the *same* ccxt, whose HTTP either goes to an
in-process transport or to a loopback server (:mod:`core.venues.sim`). There is no
``if simulated`` below this line; only the URLs and the ``requests`` session differ.

What the adapter owns (DESIGN §6):

- the wallet mapping: it passes Binance's transfer ``type`` itself (``MAIN_UMFUTURE`` ...), so
  ccxt's isolated-margin fallback for unknown account names can never happen;
- the retry policy (:mod:`core.venues.ccxt_core`): ccxt's own retries are off; reads retry here
  with backoff, writes never, and no write loads market data (``warm_up`` at start);
- the venue's clock: ``warm_up`` measures the offset to Binance's ``serverTime`` into ccxt's
  ``options['timeDifference']``; a ``-1021`` re-syncs it (a read is retried once, a write is
  raised as :class:`~core.venues.errors.ClockSkewRejected` for the caller to look up first);
- error classification by URL path and Binance code (:mod:`core.venues.errors`), and answers it
  cannot read (HTML from a proxy, truncated JSON, no id) as ``OutcomeUnknown`` for writes;
- rate limits per API family with Binance weights, honouring 429/418 ``Retry-After`` and the
  caller's ``ts_deadline_ns`` (``RateBudgetExhausted`` before anything is sent);
- lookups for every write: transfers by history with claims from the store
  (:mod:`core.venues.lookup`), conversions by ``quoteId``, withdrawals by ``withdrawOrderId``,
  margin orders by ``newClientOrderId``; ``not_found_yet`` until the window closes;
- the transfer fields ccxt leaves ``None`` (timestamp, status, amount, wallets) on the receipt;
- the right ccxt params per wallet (the reads, in :mod:`core.venues.ccxt_reads`): COIN-M is
  ``type='swap', subType='inverse'`` (``type='delivery'`` silently returns *spot*), portfolio
  margin is ``portfolioMargin=True``, options are read from ``eapi`` directly
  (``fetch_balance({'type': 'option'})`` silently returns *spot* too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from core.clock import ns_to_datetime
from core.domain import Asset, WalletKind
from core.errors import DataError, OutcomeUnknown, TransferNotAllowed, VenueError, VenueRejected
from core.venues import parse
from core.venues.base import (
    ConvertQuote,
    ConvertResult,
    DepositReport,
    MarginOrderResult,
    TransferHistoryRow,
    VenueTransferRequest,
    VenueTransferStatus,
    WithdrawalReceipt,
    WriteLookup,
)
from core.venues.capabilities import EXCHANGE_CAPABILITIES, ConversionMethod
from core.venues.ccxt_core import BINANCE_REQUIRED_HAS
from core.venues.ccxt_plumbing import canonical_path, rewrite_api_urls
from core.venues.ccxt_reads import CcxtReads
from core.venues.errors import ClockSkewRejected
from core.venues.journal import JournalEntry, WriteKind
from core.venues.lookup import window_closes_ns
from core.venues.parse_orders import parse_margin_order, parse_order_status
from core.venues.parse_writes import (
    parse_convert_order,
    parse_convert_status,
    parse_withdrawal,
    parse_withdrawal_status,
)

__all__ = ["BINANCE_REQUIRED_HAS", "CcxtVenue", "canonical_path", "rewrite_api_urls"]

T = TypeVar("T")

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

# Codes a lookup by our key answers when the venue has no such write. -2013 NO_SUCH_ORDER
# (margin order query). For convert ``orderStatus`` Binance documents no code for an unknown
# id; -345233 is the simulator's ("Order does not exist."): any other refusal is raised.
_NO_SUCH_ORDER = -2013
_NO_SUCH_CONVERT = -345233


def _client_order_id(key: str, venue: str) -> str:
    if not isinstance(key, str) or not _CLIENT_ORDER_ID_RE.match(key):
        raise DataError(
            "an order key must be 1-36 characters of A-Z a-z 0-9 . : / _ - (Binance "
            "newClientOrderId)",
            key=key,
            venue=venue,
        )
    return key


def _required(value: object, what: str) -> str:
    """The id a write's answer must carry, as a string; missing → ``DataError`` (→ unknown)."""
    if value is None or value == "":
        raise DataError(f"the answer has no {what}")
    return str(value)


class CcxtVenue(CcxtReads):
    """A venue reached through a ccxt Binance exchange object.

    Construction makes no request; call :meth:`warm_up` at start (writes refuse until then).
    Parameters are those of :class:`~core.venues.ccxt_core.CcxtCore`.

    Examples
    --------
    Built by :mod:`core.venues.factory` (``build_desk_venues``, ``sim_venue``, ``live_venue``):

    >>> venue.warm_up()  # doctest: +SKIP
    >>> venue.balances(WalletKind.SPOT)  # doctest: +SKIP
    """

    # -- transfers (template hooks) -----------------------------------------------------------
    def _send_transfer(
        self, request: VenueTransferRequest, ts_deadline_ns: int | None
    ) -> tuple[str, VenueTransferStatus]:
        def tran_id(result: Any) -> str:
            return _required(result.get("id") or (result.get("info") or {}).get("tranId"), "tranId")

        venue_id = self._write(
            "transfer",
            lambda: self._ex.transfer(
                request.asset.code,
                str(request.amount),
                _ACCOUNT_NAME[request.from_wallet],
                _ACCOUNT_NAME[request.to_wallet],
                {"type": request.venue_type},
            ),
            tran_id,
            ts_deadline_ns=ts_deadline_ns,
            asset=request.asset.code,
            amount=str(request.amount),
            from_wallet=str(request.from_wallet),
            to_wallet=str(request.to_wallet),
            key=request.key,
        )
        # ccxt leaves timestamp/status/amount/accounts None for this endpoint: the receipt
        # built by BaseVenue.transfer carries ours instead.
        return venue_id, VenueTransferStatus.PENDING

    def _transfer_history(
        self,
        request: VenueTransferRequest,
        start_ns: int,
        end_ns: int,
        ts_deadline_ns: int | None,
    ) -> tuple[TransferHistoryRow, ...]:
        rows: list[Any] = []
        page = 1
        while True:
            batch = self._read(
                "fetch_transfers",
                lambda page=page: self._ex.fetch_transfers(  # type: ignore[misc]
                    request.asset.code,
                    start_ns // 1_000_000,
                    100,
                    {"type": request.venue_type, "until": end_ns // 1_000_000, "current": page},
                ),
                ts_deadline_ns=ts_deadline_ns,
                key=request.key,
            )
            rows.extend(t["info"] for t in batch)
            if len(batch) < 100:
                break
            page += 1
        return parse.parse_transfer_rows(rows)

    # -- shared by the key-addressed writes -----------------------------------------------------
    def _sent(
        self, kind: WriteKind, key: str, ts_sent_ns: int | None
    ) -> tuple[JournalEntry | None, int]:
        """The journal entry of ``key`` (or none) and the send time its window counts from."""
        entry = self.journal.get(kind, key)
        if entry is not None:
            return entry, entry.ts_sent_ns
        if ts_sent_ns is None:
            raise DataError(
                f"this process has no record of the {kind.value}: pass ts_sent_ns (venue "
                "clock) from the intent row",
                key=key,
                venue=self.name,
            )
        return self.journal.adopt(kind, key, ts_sent_ns=ts_sent_ns), ts_sent_ns

    def _not_found(
        self, kind: WriteKind, key: str, entry: JournalEntry | None, ts_sent_ns: int
    ) -> WriteLookup[Any]:
        closes = window_closes_ns(ts_sent_ns, self._lookup_window_s)
        closed = self.venue_now_ns() >= closes
        status = VenueTransferStatus.NOT_FOUND if closed else VenueTransferStatus.NOT_FOUND_YET
        if entry is not None:
            entry.last_lookup = status
        return WriteLookup(self.name, key, status, None, ns_to_datetime(closes))

    def _send_once(self, kind: WriteKind, key: str, send: Callable[[], T]) -> T:
        """Hold ``key``, run ``send()``; free the key only if the venue refused before applying."""
        entry = self.journal.hold(kind, key, ts_sent_ns=self.venue_now_ns())
        try:
            return send()
        except ClockSkewRejected:
            entry.not_applied = True  # refused before processing; freed by forget_*
            raise
        except OutcomeUnknown:
            raise  # the key stays held: look it up first
        except VenueError:
            self.journal.release(kind, key)  # refused: nothing applied, the key is free
            raise

    # -- conversions --------------------------------------------------------------------------
    def convert_quote(
        self,
        from_asset: Asset,
        to_asset: Asset,
        from_amount: Decimal,
        wallet: WalletKind = WalletKind.SPOT,
        *,
        ts_deadline_ns: int | None = None,
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
            ts_deadline_ns=ts_deadline_ns,
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

    def accept_quote(self, quote: ConvertQuote, *, ts_deadline_ns: int | None) -> ConvertResult:
        """Accept a quote (POST /sapi/v1/convert/acceptQuote): a write, sent once.

        The quote id is the key: a second accept of it raises ``DuplicateIdempotencyKey``; after
        ``OutcomeUnknown`` look it up with :meth:`lookup_convert`.
        """

        def parse_accept(trade: Any) -> ConvertResult:
            info = trade["info"]
            return ConvertResult(
                venue=self.name,
                order_id=_required(info.get("orderId"), "orderId"),
                quote_id=quote.quote_id,
                status=str(info["orderStatus"]),
                from_asset=quote.from_asset,
                to_asset=quote.to_asset,
                from_amount=quote.from_amount,
                to_amount=quote.to_amount,
            )

        result = self._send_once(
            WriteKind.CONVERT,
            quote.quote_id,
            lambda: self._write(
                "accept_quote",
                lambda: self._ex.create_convert_trade(
                    quote.quote_id,
                    quote.from_asset.code,
                    quote.to_asset.code,
                    str(quote.from_amount),
                ),
                parse_accept,
                ts_deadline_ns=ts_deadline_ns,
                asset=quote.from_asset.code,
                amount=str(quote.from_amount),
                quote_id=quote.quote_id,
            ),
        )
        entry = self.journal.get(WriteKind.CONVERT, quote.quote_id)
        if entry is not None:
            entry.venue_id = result.order_id
        return result

    def lookup_convert(
        self, quote: ConvertQuote, *, ts_deadline_ns: int | None = None
    ) -> WriteLookup[ConvertResult]:
        """What happened to the accept of ``quote`` (GET /sapi/v1/convert/orderStatus?quoteId=).

        Without a record in this process (a restart) the window counts from the quote's
        ``valid_until``: Binance refuses to accept an expired quote, so an accept can only have
        left before it.
        """
        entry = self.journal.get(WriteKind.CONVERT, quote.quote_id)
        ts_sent_ns = (
            entry.ts_sent_ns if entry is not None else round(quote.valid_until.timestamp() * 1e9)
        )
        try:
            info = self._read(
                "lookup_convert",
                lambda: self._ex.sapiGetConvertOrderStatus({"quoteId": quote.quote_id}),
                ts_deadline_ns=ts_deadline_ns,
                quote_id=quote.quote_id,
            )
        except VenueRejected as exc:
            if exc.context.get("binance_code") != _NO_SUCH_CONVERT:
                raise
            return self._not_found(WriteKind.CONVERT, quote.quote_id, entry, ts_sent_ns)
        status = parse_convert_status(info.get("orderStatus"))
        found = parse_convert_order(self.name, quote.quote_id, info)
        if entry is not None:
            entry.venue_id, entry.last_lookup = found.order_id, status
        closes = ns_to_datetime(window_closes_ns(ts_sent_ns, self._lookup_window_s))
        return WriteLookup(self.name, quote.quote_id, status, found, closes)

    def forget_convert(self, quote_id: str) -> None:
        """Free a quote whose accept was proven not applied (``not_found`` or a -1021)."""
        self.journal.forget(WriteKind.CONVERT, quote_id, now_ns=self.venue_now_ns())

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
        self,
        from_asset: Asset,
        to_asset: Asset,
        from_amount: Decimal,
        idempotency_key: str,
        *,
        ts_deadline_ns: int | None,
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
        ...                    "call-7-s2", ts_deadline_ns=None)  # doctest: +SKIP
        """
        key = _client_order_id(idempotency_key, self.name)
        self.journal.check_free(WriteKind.MARGIN_ORDER, key)
        amount = self.prepare_amount(from_asset, from_amount)  # VenueNotReady if cold
        symbol, side = self._margin_market(from_asset, to_asset)
        params = self._margin_params(key)
        if side == "BUY":
            params["quoteOrderQty"] = str(amount)  # a BUY spends the quote asset

        def call() -> Any:
            if side == "SELL":
                return self._ex.create_order(symbol, "market", "sell", str(amount), None, params)
            return self._ex.create_order(symbol, "market", "buy", None, None, params)

        def parse_order(order: Any) -> MarginOrderResult:
            info = order["info"]
            _required(info.get("orderId"), "orderId")
            return parse_margin_order(self.name, key, info, from_asset, to_asset)

        result = self._send_once(
            WriteKind.MARGIN_ORDER,
            key,
            lambda: self._write(
                "margin_order",
                call,
                parse_order,
                ts_deadline_ns=ts_deadline_ns,
                asset=from_asset.code,
                to_asset=to_asset.code,
                amount=str(amount),
                key=key,
            ),
        )
        entry = self.journal.get(WriteKind.MARGIN_ORDER, key)
        if entry is not None:
            entry.venue_id = result.order_id
        return result

    def lookup_margin_order(
        self,
        key: str,
        from_asset: Asset,
        to_asset: Asset,
        *,
        ts_sent_ns: int | None = None,
        ts_deadline_ns: int | None = None,
    ) -> WriteLookup[MarginOrderResult]:
        """The margin order sent under ``key`` (GET ``/sapi/v1/margin/order``, on a PM account
        ``/papi/v1/margin/order``, by ``origClientOrderId``).

        ``-2013`` (no such order) is ``not_found_yet`` until the window after the send has
        closed, then ``not_found``: only then may :meth:`forget_margin_order` free the key.
        ``ts_sent_ns`` (venue clock) is needed when this process did not send it.
        """
        key = _client_order_id(key, self.name)
        entry, sent_ns = self._sent(WriteKind.MARGIN_ORDER, key, ts_sent_ns)
        if not self._ex.markets:
            self.load_markets(ts_deadline_ns=ts_deadline_ns)
        symbol, _ = self._margin_market(from_asset, to_asset)
        params = {**self._margin_params(key), "clientOrderId": key}
        del params["newClientOrderId"]
        try:
            order = self._read(
                "lookup_margin_order",
                lambda: self._ex.fetch_order(None, symbol, params),
                ts_deadline_ns=ts_deadline_ns,
                key=key,
            )
        except VenueRejected as exc:
            if exc.context.get("binance_code") != _NO_SUCH_ORDER:
                raise
            return self._not_found(WriteKind.MARGIN_ORDER, key, entry, sent_ns)
        info = order["info"]
        status = parse_order_status(info)
        found = parse_margin_order(self.name, key, info, from_asset, to_asset)
        if entry is not None:
            entry.venue_id, entry.last_lookup = found.order_id, status
        closes = ns_to_datetime(window_closes_ns(sent_ns, self._lookup_window_s))
        return WriteLookup(self.name, key, status, found, closes)

    def forget_margin_order(self, key: str) -> None:
        """Free a key whose order was proven absent (``not_found``, or a -1021 refusal)."""
        self.journal.forget(WriteKind.MARGIN_ORDER, key, now_ns=self.venue_now_ns())

    # -- cross-venue moves --------------------------------------------------------------------
    def deposit_address(
        self, asset: Asset, network: str, *, ts_deadline_ns: int | None = None
    ) -> str:
        """This venue's deposit address for ``asset`` on ``network``."""
        res = self._read(
            "deposit_address",
            lambda: self._ex.fetch_deposit_address(asset.code, {"network": network}),
            ts_deadline_ns=ts_deadline_ns,
            asset=asset.code,
        )
        return str(res["address"])

    def withdraw(
        self,
        asset: Asset,
        amount: Decimal,
        address: str,
        network: str,
        idempotency_key: str,
        *,
        ts_deadline_ns: int | None,
    ) -> WithdrawalReceipt:
        """Withdraw from spot to ``address``; Binance's ``withdrawOrderId`` carries our key.

        The amount is rounded to the network's own step (``withdrawIntegerMultiple``). After
        ``OutcomeUnknown`` look it up with :meth:`lookup_withdrawal` (by ``withdrawOrderId``);
        a second send under a held key raises ``DuplicateIdempotencyKey``.
        """
        sent = self.prepare_amount(asset, amount, network=network)
        t0 = self.venue_now_ns()
        withdrawal_id = self._send_once(
            WriteKind.WITHDRAWAL,
            idempotency_key,
            lambda: self._write(
                "withdraw",
                lambda: self._ex.withdraw(
                    asset.code,
                    str(sent),
                    address,
                    {"network": network, "withdrawOrderId": idempotency_key},
                ),
                lambda res: _required(res.get("id"), "withdrawal id"),
                ts_deadline_ns=ts_deadline_ns,
                asset=asset.code,
                amount=str(sent),
                key=idempotency_key,
            ),
        )
        entry = self.journal.get(WriteKind.WITHDRAWAL, idempotency_key)
        if entry is not None:
            entry.venue_id = withdrawal_id
        return WithdrawalReceipt(
            venue=self.name,
            key=idempotency_key,
            withdrawal_id=withdrawal_id,
            asset=asset,
            amount=sent,
            address=address,
            network=network,
            sent_at=ns_to_datetime(t0),
        )

    def lookup_withdrawal(
        self,
        key: str,
        asset: Asset,
        *,
        ts_sent_ns: int | None = None,
        ts_deadline_ns: int | None = None,
    ) -> WriteLookup[WithdrawalReceipt]:
        """The withdrawal sent under ``key`` (GET /sapi/v1/capital/withdraw/history
        ?withdrawOrderId=): completed → ``confirmed``; email sent, awaiting approval or
        processing → ``pending``; cancelled, rejected or failed → ``failed``; none →
        ``not_found_yet`` until the window closes, then ``not_found``.
        """
        entry, sent_ns = self._sent(WriteKind.WITHDRAWAL, key, ts_sent_ns)
        rows = self._read(
            "lookup_withdrawal",
            lambda: self._ex.sapiGetCapitalWithdrawHistory(
                {"coin": asset.code, "withdrawOrderId": key}
            ),
            ts_deadline_ns=ts_deadline_ns,
            asset=asset.code,
            key=key,
        )
        mine = [r for r in rows if r.get("withdrawOrderId") == key]
        if not mine:
            return self._not_found(WriteKind.WITHDRAWAL, key, entry, sent_ns)
        info = mine[0]
        status = parse_withdrawal_status(info.get("status"))
        found = parse_withdrawal(self.name, key, info)
        if entry is not None:
            entry.venue_id, entry.last_lookup = found.withdrawal_id, status
        closes = ns_to_datetime(window_closes_ns(sent_ns, self._lookup_window_s))
        return WriteLookup(self.name, key, status, found, closes)

    def forget_withdrawal(self, key: str) -> None:
        """Free a key whose withdrawal was proven absent (``not_found``, or a -1021)."""
        self.journal.forget(WriteKind.WITHDRAWAL, key, now_ns=self.venue_now_ns())

    def deposits(
        self, asset: Asset, since: datetime, *, ts_deadline_ns: int | None = None
    ) -> tuple[DepositReport, ...]:
        """Deposits of ``asset`` seen since ``since``; ``credited`` once Binance status is 1."""
        since_ms = int(since.timestamp() * 1000)
        rows = self._read(
            "fetch_deposits",
            lambda: self._ex.fetch_deposits(asset.code, since_ms),
            ts_deadline_ns=ts_deadline_ns,
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
