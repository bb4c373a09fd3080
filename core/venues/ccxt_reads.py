"""The adapter's reads: balances, positions, marks, option marks, price indices, brackets.

:class:`CcxtReads` sits between :class:`~core.venues.ccxt_core.CcxtCore` (how requests run) and
:class:`~core.venues.ccxt_venue.CcxtVenue` (writes and lookups). Each domain read calls ccxt
(``_ccxt_*`` raw calls take and return venue dicts) and hands the raw Binance payload to a named
``parse_*`` function (STYLE rule 3). The right ccxt parameters per wallet are chosen here:

- COIN-M is ``type='swap', subType='inverse'`` (``type='delivery'`` silently returns *spot*);
- the options wallet is read from ``GET /eapi/v1/marginAccount`` directly: ccxt 4.5.90's
  ``fetch_balance({'type': 'option'})`` sends ``GET /api/v3/account`` and silently returns
  *spot* balances (its ``fetchBalance`` has no options branch);
- option positions are ``fetch_positions(None, {'method': 'option'})`` (``GET
  /eapi/v1/position``), option marks ``GET /eapi/v1/mark`` with ``GET /eapi/v1/index`` per
  underlying; a Portfolio Margin account reads margin/UM/CM through ``papi``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Any

from core.clock import ns_to_datetime
from core.domain import Asset, Balance, MarkPrice, WalletKind
from core.errors import DataError, TransferNotAllowed
from core.params import Bracket
from core.venues import parse
from core.venues.ccxt_core import CcxtCore
from core.venues.parse_options import (
    binance_option_underlying,
    parse_option_index,
    parse_option_marks,
    parse_option_positions,
)
from core.venues.reports import IndexPriceReport, OptionMarkReport, PositionReport

__all__ = ["CcxtReads"]


class CcxtReads(CcxtCore):
    """Domain reads of a venue reached through a ccxt Binance exchange (see the module doc)."""

    # -- raw ccxt calls (venue dicts) ---------------------------------------------------------
    def _ccxt_fetch_balance(self, params: dict[str, Any], ts_deadline_ns: int | None) -> Any:
        return self._read(
            "fetch_balance",
            lambda: self._ex.fetch_balance(params),
            ts_deadline_ns=ts_deadline_ns,
            params=params,
        )["info"]

    def _ccxt_fetch_positions(
        self, params: dict[str, Any], ts_deadline_ns: int | None
    ) -> list[Any]:
        rows = self._read(
            "fetch_positions",
            lambda: self._ex.fetch_positions(None, params),
            ts_deadline_ns=ts_deadline_ns,
        )
        return [r["info"] for r in rows]

    # -- domain reads -------------------------------------------------------------------------
    def balances(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> tuple[Balance, ...]:
        """Balances of one wallet, read with the endpoint Binance uses for it."""
        w = WalletKind.parse(str(wallet), where=f"balances on {self.name}")
        dl = ts_deadline_ns
        match w:
            case WalletKind.SPOT:
                return parse.parse_spot_balances(
                    self.name, self._ccxt_fetch_balance({"type": "spot"}, dl)
                )
            case WalletKind.FUNDING:
                return parse.parse_funding_balances(
                    self.name, self._ccxt_fetch_balance({"type": "funding"}, dl)
                )
            case WalletKind.MARGIN | WalletKind.UM | WalletKind.CM if self.portfolio_margin:
                return parse.parse_pm_balances(
                    self.name, w, self._ccxt_fetch_balance({"portfolioMargin": True}, dl)
                )
            case WalletKind.PM:
                if not self.portfolio_margin:
                    raise TransferNotAllowed(
                        "venue is not a portfolio-margin account", venue=self.name
                    )
                return parse.parse_pm_balances(
                    self.name, w, self._ccxt_fetch_balance({"portfolioMargin": True}, dl)
                )
            case WalletKind.MARGIN:
                return parse.parse_margin_balances(
                    self.name,
                    self._ccxt_fetch_balance({"type": "margin", "marginMode": "cross"}, dl),
                )
            case WalletKind.UM:
                return parse.parse_futures_balances(
                    self.name,
                    w,
                    self._ccxt_fetch_balance({"type": "swap", "subType": "linear"}, dl),
                )
            case WalletKind.CM:
                # type='delivery' would silently return *spot* balances in ccxt 4.5.90.
                return parse.parse_futures_balances(
                    self.name,
                    w,
                    self._ccxt_fetch_balance({"type": "swap", "subType": "inverse"}, dl),
                )
            case WalletKind.OPTIONS:
                info = self._read(
                    "fetch_balance",
                    lambda: self._ex.eapiPrivateGetMarginAccount({}),
                    ts_deadline_ns=dl,
                )
                return parse.parse_options_balances(self.name, info)
        raise DataError("unhandled wallet kind", wallet=str(w))  # pragma: no cover

    def _margin_assets(self) -> dict[str, str]:
        return {
            str(m["id"]): str(m["settle"]) for m in self._ex.markets.values() if m.get("contract")
        }

    def positions(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> tuple[PositionReport, ...]:
        """Open positions of the UM or CM wallet (via papi on a PM account), or of the options
        wallet (``GET /eapi/v1/position``: ccxt ``fetch_positions(None, {"method": "option"})``).
        """
        w = WalletKind.parse(str(wallet), where=f"positions on {self.name}")
        match w:
            case WalletKind.UM:
                params: dict[str, Any] = {"subType": "linear"}
            case WalletKind.CM:
                params = {"subType": "inverse"}
            case WalletKind.OPTIONS:
                rows = self._ccxt_fetch_positions({"method": "option"}, ts_deadline_ns)
                return parse_option_positions(self.name, rows)
            case _:
                raise DataError("positions are read from um, cm or options wallets", wallet=str(w))
        if self.portfolio_margin:
            params["portfolioMargin"] = True
        rows = self._ccxt_fetch_positions(params, ts_deadline_ns)
        return parse.parse_positions(self.name, w, rows, self._margin_assets())

    def _premium_index(self, wallet: WalletKind, op: str, ts_deadline_ns: int | None) -> Any:
        match wallet:
            case WalletKind.UM:
                endpoint = self._ex.fapiPublicGetPremiumIndex
            case WalletKind.CM:
                endpoint = self._ex.dapiPublicGetPremiumIndex
            case _:
                raise DataError("premium index is for um or cm contracts", wallet=str(wallet))
        return self._read(op, lambda: endpoint({}), ts_deadline_ns=ts_deadline_ns)

    def funding_rates(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> dict[str, Decimal]:
        """Last funding rate per perpetual of the UM or CM wallet (Binance premiumIndex)."""
        w = WalletKind.parse(str(wallet), where=f"funding rates on {self.name}")
        return parse.parse_funding_rates(
            self._premium_index(w, "fetch_funding_rates", ts_deadline_ns)
        )

    def mark_prices(
        self,
        wallet: WalletKind,
        *,
        max_age_s: float | None = None,
        ts_deadline_ns: int | None = None,
    ) -> tuple[MarkPrice, ...]:
        """Mark and index prices of every UM or CM contract, or of every option (with mark IV,
        via :meth:`option_marks`); ``max_age_s`` refuses stale ones (``StalePriceError``)."""
        w = WalletKind.parse(str(wallet), where=f"mark prices on {self.name}")
        if w is WalletKind.OPTIONS:
            options = self.option_marks(max_age_s=max_age_s, ts_deadline_ns=ts_deadline_ns)
            return tuple(m.to_mark_price() for m in options)
        marks = parse.parse_premium_index(
            self.name, self._premium_index(w, "fetch_mark_prices", ts_deadline_ns)
        )
        self._check_fresh(marks, max_age_s)
        return marks

    def _check_fresh(self, marks: Iterable[MarkPrice], max_age_s: float | None) -> None:
        if max_age_s is None:
            return
        now = ns_to_datetime(self.venue_now_ns())  # marks are stamped by the venue's clock
        for m in marks:
            m.check_fresh(now, max_age_s)

    def option_marks(
        self,
        symbols: Collection[str] | None = None,
        *,
        max_age_s: float | None = None,
        ts_deadline_ns: int | None = None,
    ) -> tuple[OptionMarkReport, ...]:
        """Marks, IVs and greeks of the venue's options (all, or ``symbols``), each with its
        underlying's index as the forward.

        ``GET /eapi/v1/mark`` (one request for every option) and one ``GET /eapi/v1/index`` per
        underlying of the options kept; each mark is stamped with its index's time, so
        ``max_age_s`` refuses marks on a stale index (``StalePriceError``).
        """
        rows = self._read(
            "fetch_option_marks",
            lambda: self._ex.eapiPublicGetMark({}),
            ts_deadline_ns=ts_deadline_ns,
        )
        if symbols is not None:
            wanted = set(symbols)
            rows = [r for r in rows if r.get("symbol") in wanted]
        underlyings = sorted({binance_option_underlying(str(r.get("symbol"))) for r in rows})
        index = {
            u: parse_option_index(
                self.name,
                u,
                self._read(
                    "fetch_option_index",
                    lambda u=u: self._ex.eapiPublicGetIndex({"underlying": u}),  # type: ignore[misc]
                    ts_deadline_ns=ts_deadline_ns,
                ),
            )
            for u in underlyings
        }
        marks = parse_option_marks(self.name, rows, index)
        self._check_fresh((m.to_mark_price() for m in marks), max_age_s)
        return marks

    def price_index(
        self,
        base: Asset,
        quote: Asset,
        *,
        max_age_s: float | None = None,
        ts_deadline_ns: int | None = None,
    ) -> IndexPriceReport:
        """The venue's price index of ``base`` in ``quote`` (``GET /sapi/v1/margin/priceIndex``:
        the index Binance values cross-margin and Portfolio Margin collateral at), stamped with
        its ``calcTime``; ``max_age_s`` refuses a stale one (``StalePriceError``)."""
        raw = self._read(
            "fetch_price_index",
            lambda: self._ex.sapiGetMarginPriceIndex({"symbol": base.code + quote.code}),
            ts_deadline_ns=ts_deadline_ns,
            asset=base.code,
        )
        report = parse.parse_price_index(self.name, base, quote, raw)
        self._check_fresh((MarkPrice(base.code + quote.code, report.price, report.at),), max_age_s)
        return report

    def leverage_brackets(
        self, wallet: WalletKind, *, ts_deadline_ns: int | None = None
    ) -> Mapping[str, tuple[Bracket, ...]]:
        """Maintenance-margin brackets of USDⓈ-M contracts: ``GET /fapi/v1/leverageBracket``,
        on a Portfolio Margin account ``GET /papi/v1/um/leverageBracket`` (same rows)."""
        w = WalletKind.parse(str(wallet), where=f"brackets on {self.name}")
        if w is not WalletKind.UM:
            raise DataError("leverage brackets are implemented for um only", wallet=str(w))
        endpoint = (
            self._ex.papiGetUmLeverageBracket
            if self.portfolio_margin
            else self._ex.fapiPrivateGetLeverageBracket
        )
        rows = self._read(
            "fetch_leverage_brackets", lambda: endpoint({}), ts_deadline_ns=ts_deadline_ns
        )
        return parse.parse_leverage_brackets(rows)
