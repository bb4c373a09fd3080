"""Binance's European options REST endpoints (``eapi``) over the simulated exchange.

Handlers take the engine and the request's parameters and return Binance's JSON, as
:class:`~core.venues.sim.dialect.BinanceDialect` registers them (it does the signing, weights,
faults and errors around them). Shapes follow Binance's options API documentation:

- ``GET /eapi/v1/exchangeInfo`` (public): ``optionContracts``, ``optionAssets``,
  ``optionSymbols`` (what ccxt's ``load_markets`` reads when option markets are enabled);
- ``GET /eapi/v1/index?underlying=BTCUSDT`` (public): ``{"time", "indexPrice"}``;
- ``GET /eapi/v1/mark[?symbol=]`` (public): ``markPrice``, ``bidIV``, ``askIV``, ``markIV``,
  ``delta``, ``theta``, ``gamma``, ``vega``, ``highPriceLimit``, ``lowPriceLimit``,
  ``riskFreeInterest`` (no time: Binance stamps none);
- ``GET /eapi/v1/position[?symbol=]`` (signed): one row per held option, ``quantity`` signed
  (short < 0) next to ``side`` LONG / SHORT, as Binance documents it;
- ``GET /eapi/v1/marginAccount`` (signed): per asset ``marginBalance`` (the wallet's cash,
  premiums paid and received already booked), ``unrealizedPNL`` (Σ qty·unit·(mark − entry)),
  ``equity`` (cash + Σ qty·unit·mark), and the greeks per underlying.

The simulator's own choices where Binance publishes no rule: bid/ask IV are the mark IV ∓ one
vol point, the price limits the mark ± 10 %, the risk-free rate 0 (as the marks are priced).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from core.domain import WalletKind
from core.venues.sim.engine import SimError, SimExchange
from core.venues.sim.options import OptionQuote, SimOption

__all__ = ["exchange_info", "index", "margin_account", "mark", "position"]

Json = Any
Params = dict[str, str]
_Q8 = Decimal("0.00000001")
_ONE_VOL_POINT = Decimal("0.01")


def _s8(x: Decimal) -> str:
    return format(x.quantize(_Q8), "f")


def _f8(x: float) -> str:
    return format(Decimal(repr(x)).quantize(_Q8), "f")


def _listed(e: SimExchange, symbol: str | None) -> list[SimOption]:
    if symbol is None:
        return list(e.option_book.options.values())
    opt = e.option_book.options.get(symbol)
    if opt is None:
        raise SimError(400, -1121, "Invalid symbol.")
    return [opt]


def exchange_info(e: SimExchange, p: Params) -> Json:
    """GET /eapi/v1/exchangeInfo."""
    opts = list(e.option_book.options.values())
    underlyings = sorted({(o.underlying, o.quote) for o in opts})
    contract_id = {u: i for i, u in enumerate(underlyings, start=1)}
    limit = e.config.weight_limits_per_min.get("eapi", 400)
    return {
        "timezone": "UTC",
        "serverTime": e.now_ms(),
        "optionContracts": [
            {
                "id": contract_id[(base, quote)],
                "baseAsset": base,
                "quoteAsset": quote,
                "underlying": base + quote,
                "settleAsset": quote,
            }
            for base, quote in underlyings
        ],
        "optionAssets": [{"id": 1, "name": q} for q in sorted({o.quote for o in opts})],
        "optionSymbols": [
            {
                "contractId": contract_id[(o.underlying, o.quote)],
                "expiryDate": o.expiry_ns // 1_000_000,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "5",
                        "maxPrice": "1000000",
                        "tickSize": "5",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.01",
                        "maxQty": "10000",
                        "stepSize": "0.01",
                    },
                ],
                "id": i,
                "symbol": o.symbol,
                "side": o.right,
                "strikePrice": _s8(o.strike),
                "underlying": o.index_symbol,
                "unit": int(o.unit) if o.unit == o.unit.to_integral_value() else str(o.unit),
                "makerFeeRate": "0.00020000",
                "takerFeeRate": "0.00020000",
                "minQty": "0.01",
                "maxQty": "10000",
                "initialMargin": "0.15000000",
                "maintenanceMargin": "0.07500000",
                "minInitialMargin": "0.10000000",
                "minMaintenanceMargin": "0.05000000",
                "priceScale": 0,
                "quantityScale": 2,
                "quoteAsset": o.quote,
            }
            for i, o in enumerate(opts, start=1)
        ],
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": limit,
            }
        ],
    }


def index(e: SimExchange, p: Params) -> Json:
    """GET /eapi/v1/index?underlying=BTCUSDT: the underlying's spot index and its time."""
    underlying = p.get("underlying")
    if not underlying:
        raise SimError(400, -1102, "Mandatory parameter 'underlying' was not sent.")
    opt = next((o for o in e.option_book.options.values() if o.index_symbol == underlying), None)
    if opt is None:
        raise SimError(400, -1121, "Invalid symbol.")
    forward, at_ns = e.option_forward(opt)
    return {"time": at_ns // 1_000_000, "indexPrice": _s8(forward)}


def _mark_row(q: OptionQuote) -> Json:
    return {
        "symbol": q.symbol,
        "markPrice": _s8(q.mark),
        "bidIV": _s8(max(Decimal(0), q.iv - _ONE_VOL_POINT)),
        "askIV": _s8(q.iv + _ONE_VOL_POINT),
        "markIV": _s8(q.iv),
        "delta": _f8(q.delta),
        "theta": _f8(q.theta_per_day),
        "gamma": _f8(q.gamma),
        "vega": _f8(q.vega_per_vol_point),
        "highPriceLimit": _s8(q.mark * Decimal("1.1")),
        "lowPriceLimit": _s8(q.mark * Decimal("0.9")),
        "riskFreeInterest": "0",
    }


def mark(e: SimExchange, p: Params) -> Json:
    """GET /eapi/v1/mark[?symbol=]: marks with IVs and greeks."""
    return [_mark_row(e.option_quote(o.symbol)) for o in _listed(e, p.get("symbol"))]


def position(e: SimExchange, p: Params) -> Json:
    """GET /eapi/v1/position[?symbol=]: held options, ``quantity`` signed."""
    symbol = p.get("symbol")
    if symbol is not None:
        _listed(e, symbol)  # -1121 for an unknown symbol
    out = []
    for pos in e.option_book.positions.values():
        if pos.qty == 0 or symbol not in (None, pos.symbol):
            continue
        opt = e.option_book.options[pos.symbol]
        q = e.option_quote(pos.symbol)
        size = pos.qty * opt.unit
        out.append(
            {
                "entryPrice": _s8(pos.entry_price),
                "symbol": pos.symbol,
                "side": "LONG" if pos.qty > 0 else "SHORT",
                "quantity": _s8(pos.qty),
                "reducibleQty": _s8(abs(pos.qty)),
                "markValue": _s8(size * q.mark),
                "ror": _s8((q.mark - pos.entry_price) / pos.entry_price * (1 if size > 0 else -1))
                if pos.entry_price
                else "0",
                "unrealizedPNL": _s8(size * (q.mark - pos.entry_price)),
                "markPrice": _s8(q.mark),
                "strikePrice": _s8(opt.strike),
                "positionCost": _s8(size * pos.entry_price),
                "expiryDate": opt.expiry_ns // 1_000_000,
                "priceScale": 0,
                "quantityScale": 2,
                "optionSide": opt.right,
                "quoteAsset": opt.quote,
                "time": e.now_ms(),
                "bidQuantity": "0.0000",
                "askQuantity": "0.0000",
            }
        )
    return out


def margin_account(e: SimExchange, p: Params) -> Json:
    """GET /eapi/v1/marginAccount: the options wallet per asset, with the positions' PnL."""
    e.settle()
    book = e.wallets[WalletKind.OPTIONS]
    upnl: dict[str, Decimal] = defaultdict(Decimal)
    value: dict[str, Decimal] = defaultdict(Decimal)
    greeks: dict[str, list[float]] = {}
    for pos in e.option_book.positions.values():
        opt = e.option_book.options[pos.symbol]
        q = e.option_quote(pos.symbol)
        size = pos.qty * opt.unit
        upnl[opt.quote] += size * (q.mark - pos.entry_price)
        value[opt.quote] += size * q.mark
        g = greeks.setdefault(opt.index_symbol, [0.0, 0.0, 0.0, 0.0])
        for i, x in enumerate((q.delta, q.gamma, q.theta_per_day, q.vega_per_vol_point)):
            g[i] += float(size) * x
    assets = sorted(set(book) | set(value))
    rows = []
    for a in assets:
        line = book.get(a)
        cash = line.total if line is not None else Decimal(0)
        rows.append(
            {
                "asset": a,
                "marginBalance": _s8(cash),
                "equity": _s8(cash + value[a]),
                "available": _s8(line.free if line is not None else Decimal(0)),
                "initialMargin": "0.00000000",
                "maintMargin": "0.00000000",
                "unrealizedPNL": _s8(upnl[a]),
                "adjustedEquity": _s8(cash + value[a]),
            }
        )
    return {
        "asset": rows,
        "greek": [
            {
                "underlying": u,
                "delta": _f8(g[0]),
                "gamma": _f8(g[1]),
                "theta": _f8(g[2]),
                "vega": _f8(g[3]),
            }
            for u, g in sorted(greeks.items())
        ],
        "time": e.now_ms(),
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "reduceOnly": False,
    }
