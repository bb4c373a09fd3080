"""Binance's REST dialect over the simulated exchange, for the endpoints pmr (and ccxt) use.

One :class:`BinanceDialect` per simulated venue turns ``(method, path, query, body, headers)``
into ``(HTTP status, headers, JSON)`` exactly as Binance would, so an unmodified ccxt client can
``load_markets()``, ``fetch_balance()`` and ``transfer()`` against it. It checks the API key
header and the HMAC-SHA256 signature ccxt computes, charges Binance request weights per API
family (429 + ``Retry-After`` when over, 418 ban when a client ignores the 429), and injects the
faults of :mod:`core.venues.sim.faults`. Response shapes follow Binance's documentation and the
recorded responses ccxt's own tests use (checked by ``tests/venues/test_contract.py``).

The two transports (:mod:`core.venues.sim.transport` in-process, :mod:`core.venues.sim.server`
over loopback HTTP) both call :meth:`BinanceDialect.handle`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

from core.domain import WalletKind
from core.venues.ratelimit import SAPI_UID_FAMILY, budget_family, request_weight
from core.venues.reqlog import RequestLog
from core.venues.sim import options_api
from core.venues.sim.engine import SimError, SimExchange, SimMarginOrder, SimPosition
from core.venues.sim.faults import Fault, FaultKind

__all__ = [
    "RECV_WINDOW_DEFAULT_MS",
    "RECV_WINDOW_MAX_MS",
    "TIMESTAMP_AHEAD_LIMIT_MS",
    "BinanceDialect",
    "SimResponse",
]

Json = Any
Params = dict[str, str]

# Binance's timing rule for signed requests (spot REST docs, "Timing security"; the futures APIs
# document the same): the default and largest recvWindow, and how far ahead a timestamp may be.
RECV_WINDOW_DEFAULT_MS = 5000
RECV_WINDOW_MAX_MS = 60_000
TIMESTAMP_AHEAD_LIMIT_MS = 1000


@dataclass(frozen=True, slots=True)
class SimResponse:
    """What the venue answers. ``outcome='no_answer'`` means the client sees a timeout.

    ``raw`` replaces the JSON body with bytes sent as they are (under ``content_type``): what a
    proxy or a broken answer looks like.
    """

    status: int
    body: Json
    headers: Mapping[str, str] = field(default_factory=dict)
    outcome: Literal["answer", "no_answer"] = "answer"
    raw: bytes | None = None
    content_type: str = "application/json"

    def body_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, separators=(",", ":")).encode()


# What a CDN or proxy in front of the venue answers instead of the venue's JSON.
_PROXY_HTML = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    b"<h1>Checking your browser before accessing the site.</h1></body></html>"
)


def _after_apply(kind: FaultKind, payload: SimResponse) -> SimResponse:
    """The 200 a client gets for a request the venue *did* process, broken by ``kind``."""
    match kind:
        case FaultKind.GARBLED_AFTER_APPLY:
            whole = payload.body_bytes()
            return SimResponse(200, None, payload.headers, raw=whole[: max(1, len(whole) // 2)])
        case FaultKind.HTML_AFTER_APPLY:
            return SimResponse(200, None, raw=_PROXY_HTML, content_type="text/html; charset=UTF-8")
        case FaultKind.NO_ID_AFTER_APPLY:
            return SimResponse(200, {}, payload.headers)
        case _:
            return payload


def _empty_like(payload: Json) -> Json:
    """An empty history page in the shape of ``payload`` (``HISTORY_EMPTY``)."""
    if isinstance(payload, list):
        return []
    if isinstance(payload, dict) and "rows" in payload:
        return {**payload, "total": 0, "rows": []}
    return payload


def _s(x: Decimal | int) -> str:
    """Binance sends numbers as strings with plain notation."""
    if isinstance(x, int):
        return str(x)
    text = format(x.normalize(), "f") if x != 0 else "0"
    return text


def _s8(x: Decimal) -> str:
    return format(x.quantize(Decimal("0.00000001")), "f")


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Callable[[Params], Json]
    signed: bool
    is_write: bool = False


class BinanceDialect:
    """Serve Binance REST endpoints from a :class:`SimExchange`."""

    def __init__(self, engine: SimExchange) -> None:
        self.engine = engine
        e = engine
        self._windows: dict[str, deque[tuple[int, int]]] = {}
        self._retry_until_ns: dict[str, int] = {}
        self._banned_until_ns: dict[str, int] = {}
        self.request_log = RequestLog()  # bounded: a served simulator answers all day
        self.throttled = 0  # 429/418 answers given (rate limit or injected)
        self.clock_rejections = 0  # -1021 answers given (request stamped outside the window)
        self.last_params: dict[str, str] = {}  # the last request's parameters, signature removed
        self.routes: dict[tuple[str, str], _Route] = {
            ("GET", "/api/v3/ping"): _Route(lambda p: {}, False),
            ("GET", "/api/v3/time"): _Route(lambda p: {"serverTime": e.now_ms()}, False),
            ("GET", "/fapi/v1/time"): _Route(lambda p: {"serverTime": e.now_ms()}, False),
            ("GET", "/dapi/v1/time"): _Route(lambda p: {"serverTime": e.now_ms()}, False),
            ("GET", "/api/v3/exchangeInfo"): _Route(self._spot_exchange_info, False),
            ("GET", "/fapi/v1/exchangeInfo"): _Route(self._um_exchange_info, False),
            ("GET", "/dapi/v1/exchangeInfo"): _Route(self._cm_exchange_info, False),
            ("GET", "/sapi/v1/capital/config/getall"): _Route(self._capital_config, True),
            ("GET", "/sapi/v1/margin/allPairs"): _Route(self._margin_pairs, True),
            ("GET", "/sapi/v1/margin/isolated/allPairs"): _Route(self._isolated_pairs, True),
            ("GET", "/api/v3/account"): _Route(self._spot_account, True),
            ("POST", "/sapi/v1/asset/get-funding-asset"): _Route(self._funding_assets, True),
            ("GET", "/sapi/v1/margin/account"): _Route(self._margin_account, True),
            ("GET", "/sapi/v1/margin/priceIndex"): _Route(self._margin_price_index, True),
            ("GET", "/fapi/v3/account"): _Route(self._um_account, True),
            ("GET", "/dapi/v1/account"): _Route(self._cm_account, True),
            ("GET", "/papi/v1/balance"): _Route(self._pm_balance, True),
            ("GET", "/eapi/v1/marginAccount"): _Route(
                lambda p: options_api.margin_account(e, p), True
            ),
            ("GET", "/eapi/v1/exchangeInfo"): _Route(
                lambda p: options_api.exchange_info(e, p), False
            ),
            ("GET", "/eapi/v1/index"): _Route(lambda p: options_api.index(e, p), False),
            ("GET", "/eapi/v1/mark"): _Route(lambda p: options_api.mark(e, p), False),
            ("GET", "/eapi/v1/position"): _Route(lambda p: options_api.position(e, p), True),
            ("GET", "/fapi/v3/positionRisk"): _Route(self._um_position_risk, True),
            ("GET", "/dapi/v1/positionRisk"): _Route(self._cm_position_risk, True),
            ("GET", "/papi/v1/um/positionRisk"): _Route(self._pm_um_position_risk, True),
            ("GET", "/papi/v1/cm/positionRisk"): _Route(self._pm_cm_position_risk, True),
            ("GET", "/fapi/v1/premiumIndex"): _Route(self._um_premium_index, False),
            ("GET", "/dapi/v1/premiumIndex"): _Route(self._cm_premium_index, False),
            ("GET", "/fapi/v1/leverageBracket"): _Route(self._um_brackets, True),
            ("GET", "/papi/v1/um/leverageBracket"): _Route(self._um_brackets, True),
            ("GET", "/dapi/v2/leverageBracket"): _Route(self._cm_brackets, True),
            ("GET", "/papi/v1/cm/leverageBracket"): _Route(self._cm_brackets, True),
            ("POST", "/sapi/v1/asset/transfer"): _Route(self._transfer, True, True),
            ("GET", "/sapi/v1/asset/transfer"): _Route(self._transfer_history, True),
            ("POST", "/sapi/v1/convert/getQuote"): _Route(self._convert_quote, True, True),
            ("POST", "/sapi/v1/convert/acceptQuote"): _Route(self._convert_accept, True, True),
            ("GET", "/sapi/v1/convert/orderStatus"): _Route(self._convert_status, True),
            ("POST", "/sapi/v1/margin/order"): _Route(self._margin_order, True, True),
            ("GET", "/sapi/v1/margin/order"): _Route(self._margin_order_query, True),
            ("POST", "/papi/v1/margin/order"): _Route(self._pm_margin_order, True, True),
            ("GET", "/papi/v1/margin/order"): _Route(self._pm_margin_order_query, True),
            ("POST", "/sapi/v1/capital/withdraw/apply"): _Route(self._withdraw, True, True),
            ("GET", "/sapi/v1/capital/withdraw/history"): _Route(self._withdraw_history, True),
            ("GET", "/sapi/v1/capital/deposit/hisrec"): _Route(self._deposit_history, True),
            ("GET", "/sapi/v1/capital/deposit/address"): _Route(self._deposit_address, True),
        }

    # -- request pipeline ---------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> SimResponse:
        """Answer one HTTP request the way Binance would.

        A held answer (``HELD_*`` faults) waits for its release *outside* the venue's lock, so
        other clients, and the test's own reads, go on meanwhile.
        """
        method = method.upper()
        with self.engine.lock:
            answer, fault = self._handle_locked(method, path, query, body, headers)
        if fault is not None and fault.hold is not None and not fault.hold.block(path):
            return SimResponse(0, None, outcome="no_answer")
        return answer

    def _handle_locked(
        self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> tuple[SimResponse, Fault | None]:
        self.engine.settle()  # whatever came due (credits, late bookings) before answering
        self.engine.requests_served += 1
        self.request_log.append((method, path))
        banned = self._ip_ban()
        if banned is not None:
            return banned, None
        route = self.routes.get((method, path))
        if route is None:
            return SimResponse(404, {"code": -1, "msg": f"Unknown endpoint {method} {path}"}), None
        family = budget_family(method, path)
        limited = self._rate_limit(family, request_weight(method, path))
        if limited is not None:
            return limited, None
        fault = self.engine.faults.take(method, path)
        if fault is not None:
            early = self._early_fault(fault)
            if early is not None:
                return early, None
        return self._process(route, family, method, path, query, body, headers, fault), fault

    def _process(
        self,
        route: _Route,
        family: str,
        method: str,
        path: str,
        query: str,
        body: str,
        headers: Mapping[str, str],
        fault: Fault | None,
    ) -> SimResponse:
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        self.last_params = {k: v for k, v in params.items() if k != "signature"}
        if route.signed:
            denied = self._authenticate(method, query, body, headers)
            if denied is not None:
                return denied
            late = self._check_timestamp(params)
            if late is not None:
                return late
        if fault is not None and fault.kind is FaultKind.INSUFFICIENT_FUNDS:
            return self._error(SimError(400, -5013, "Asset transfer failed: insufficient balance"))
        if fault is not None and fault.kind is FaultKind.LATE_APPLY:
            # Received and queued: booked delay_s later, while the client has timed out.
            self.engine.defer(fault.delay_s, lambda: route.handler(params))
            return SimResponse(0, None, outcome="no_answer")
        if fault is not None and fault.kind is FaultKind.HELD_NOT_APPLIED:
            return SimResponse(0, None, outcome="no_answer")  # lost, held all the same
        try:
            payload = route.handler(params)
        except SimError as exc:
            return self._error(exc)
        if fault is not None and fault.kind is FaultKind.TIMEOUT_APPLIED:
            return SimResponse(0, None, outcome="no_answer")
        if fault is not None and fault.kind is FaultKind.HISTORY_EMPTY:
            payload = _empty_like(payload)
        answer = SimResponse(200, payload, self._weight_headers(family))
        return answer if fault is None else _after_apply(fault.kind, answer)

    def _error(self, exc: SimError) -> SimResponse:
        return SimResponse(exc.http_status, {"code": exc.code, "msg": exc.msg})

    def _ip_ban(self) -> SimResponse | None:
        """The IP ban every request meets first, whatever its path (``IP_BAN``, or a
        ``RATE_LIMIT_THEN_BAN`` whose ``Retry-After`` was not waited out)."""
        plan = self.engine.faults
        now = self.engine.now_ns()
        if now < plan.banned_until_ns:
            return self._throttled(418, plan.banned_until_ns - now)
        if now < plan.retry_until_ns:
            ban_s = plan.ban_after_retry_s or self.engine.config.ban_s
            plan.banned_until_ns = now + ban_s * 1_000_000_000
            plan.retry_until_ns = 0
            return self._throttled(418, plan.banned_until_ns - now)
        return None

    def _early_fault(self, fault: Fault) -> SimResponse | None:
        kind, retry_after_s = fault.kind, fault.retry_after_s
        match kind:
            case FaultKind.IP_BAN:
                plan = self.engine.faults
                plan.banned_until_ns = self.engine.now_ns() + retry_after_s * 1_000_000_000
                return self._throttled(418, retry_after_s * 1_000_000_000)
            case FaultKind.RATE_LIMIT_THEN_BAN:
                plan = self.engine.faults
                plan.retry_until_ns = self.engine.now_ns() + retry_after_s * 1_000_000_000
                plan.ban_after_retry_s = fault.ban_s
                return self._throttled(429, retry_after_s * 1_000_000_000)
            case FaultKind.TIMEOUT_NOT_APPLIED:
                return SimResponse(0, None, outcome="no_answer")
            case FaultKind.RATE_LIMIT_429:
                return SimResponse(
                    429,
                    {"code": -1003, "msg": "Too much request weight used; current limit exceeded."},
                    {"Retry-After": str(retry_after_s)},
                )
            case FaultKind.BAN_418:
                return SimResponse(
                    418,
                    {"code": -1003, "msg": "Way too much request weight used; IP banned."},
                    {"Retry-After": str(retry_after_s)},
                )
            case FaultKind.SERVER_ERROR:
                return SimResponse(503, {"msg": "Service Unavailable"})
            case (
                FaultKind.TIMEOUT_APPLIED
                | FaultKind.INSUFFICIENT_FUNDS
                | FaultKind.LATE_APPLY
                | FaultKind.GARBLED_AFTER_APPLY
                | FaultKind.HTML_AFTER_APPLY
                | FaultKind.NO_ID_AFTER_APPLY
                | FaultKind.HISTORY_EMPTY
                | FaultKind.HELD_APPLIED
                | FaultKind.HELD_NOT_APPLIED
            ):
                return None

    def _authenticate(
        self, method: str, query: str, body: str, headers: Mapping[str, str]
    ) -> SimResponse | None:
        key = next((v for k, v in headers.items() if k.lower() == "x-mbx-apikey"), None)
        if key != self.engine.config.api_key:
            return SimResponse(
                401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
            )
        signed = body if "signature=" in body else query
        payload, sep, signature = signed.rpartition("&signature=")
        if not sep:
            return SimResponse(
                400, {"code": -1102, "msg": "Mandatory parameter 'signature' was not sent."}
            )
        expected = hmac.new(
            self.engine.config.api_secret.encode(), payload.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return SimResponse(
                400, {"code": -1022, "msg": "Signature for this request is not valid."}
            )
        return None

    def _check_timestamp(self, params: Params) -> SimResponse | None:
        """Binance's timing rule for signed requests (spot REST docs, "Timing security")::

            if timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow: process
            else: reject with -1021

        ``recvWindow`` defaults to 5000 ms and may not exceed 60000 ms (-1131). A refused
        request is never processed, so nothing is applied.
        """
        try:
            ts_ms = int(params["timestamp"])
        except (KeyError, ValueError):
            return self._error(
                SimError(
                    400,
                    -1102,
                    "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
                )
            )
        try:
            recv_window_ms = int(params.get("recvWindow", RECV_WINDOW_DEFAULT_MS))
        except ValueError:
            return self._error(SimError(400, -1100, "Illegal characters found in 'recvWindow'."))
        if not 0 < recv_window_ms <= RECV_WINDOW_MAX_MS:
            return self._error(SimError(400, -1131, "recvWindow must be less than 60000"))
        server_ms = self.engine.now_ms()
        if ts_ms >= server_ms + TIMESTAMP_AHEAD_LIMIT_MS:
            self.clock_rejections += 1
            return self._error(
                SimError(
                    400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
                )
            )
        if server_ms - ts_ms > recv_window_ms:
            self.clock_rejections += 1
            return self._error(
                SimError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
            )
        return None

    def _rate_limit(self, family: str, weight: int) -> SimResponse | None:
        limit = self.engine.config.weight_limits_per_min.get(family)
        if limit is None:
            return None
        now = self.engine.now_ns()
        banned = self._banned_until_ns.get(family, 0)
        if now < banned:
            return self._throttled(418, banned - now)
        retry = self._retry_until_ns.get(family, 0)
        if now < retry:
            # Ignoring a 429 earns an IP ban (Binance "LIMITS": 418 after repeated violations).
            until = now + self.engine.config.ban_s * 1_000_000_000
            self._banned_until_ns[family] = until
            return self._throttled(418, until - now)
        window = self._windows.setdefault(family, deque())
        while window and window[0][0] <= now - 60_000_000_000:
            window.popleft()
        used = sum(w for _, w in window)
        if used + weight > limit:
            need = used + weight - limit
            freed = 0
            wake = now + 60_000_000_000
            for ts, w in window:
                freed += w
                if freed >= need:
                    wake = ts + 60_000_000_000
                    break
            self._retry_until_ns[family] = wake
            return self._throttled(429, wake - now)
        window.append((now, weight))
        return None

    def used_weight(self, family: str) -> int:
        now = self.engine.now_ns()
        return sum(w for ts, w in self._windows.get(family, ()) if ts > now - 60_000_000_000)

    def _throttled(self, status: int, wait_ns: int) -> SimResponse:
        self.throttled += 1
        retry_after_s = max(1, -(-wait_ns // 1_000_000_000))
        msg = (
            "Way too much request weight used; IP banned."
            if status == 418
            else "Too much request weight used; current limit exceeded."
        )
        return SimResponse(status, {"code": -1003, "msg": msg}, {"Retry-After": str(retry_after_s)})

    def _weight_headers(self, family: str) -> dict[str, str]:
        used = str(self.used_weight(family))
        if family == "sapi":
            return {"X-SAPI-USED-IP-WEIGHT-1M": used}
        if family == SAPI_UID_FAMILY:
            return {"X-SAPI-USED-UID-WEIGHT-1M": used}
        return {"X-MBX-USED-WEIGHT-1M": used}

    # -- market metadata ----------------------------------------------------------------------
    def _rate_limits(self, family: str) -> list[Json]:
        limit = self.engine.config.weight_limits_per_min.get(family, 6000)
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": limit,
            }
        ]

    def _spot_symbols(self) -> list[tuple[str, str]]:
        assets = [a for a in self.engine.asset_decimals if a != "USDT"]
        return [(a, "USDT") for a in assets if "USDT" in self.engine.asset_decimals]

    def _spot_exchange_info(self, p: Params) -> Json:
        symbols = []
        for base, quote in self._spot_symbols():
            symbols.append(
                {
                    "symbol": base + quote,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": True,
                    "cancelReplaceAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": True,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.00000100",
                            "maxPrice": "1000000.00000000",
                            "tickSize": "0.00000100",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001000",
                            "maxQty": "9000000.00000000",
                            "stepSize": "0.00001000",
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": "5.00000000",
                            "applyMinToMarket": True,
                            "maxNotional": "9000000.00000000",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT", "MARGIN"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": [
                        "EXPIRE_TAKER",
                        "EXPIRE_MAKER",
                        "EXPIRE_BOTH",
                    ],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.engine.now_ms(),
            "rateLimits": self._rate_limits("api"),
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _futures_symbol(self, symbol: str) -> Json:
        inst = self.engine.instruments[symbol]
        linear = inst.kind == "linear"
        base: dict[str, Json] = {
            "symbol": inst.symbol,
            "pair": inst.underlying + inst.quote,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "baseAsset": inst.underlying,
            "quoteAsset": inst.quote,
            "marginAsset": inst.margin_asset,
            "pricePrecision": 2 if linear else 1,
            "quantityPrecision": 3 if linear else 0,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500",
            "marketTakeBound": "0.05",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.10",
                    "maxPrice": "4529764",
                    "tickSize": "0.10",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.001" if linear else "1",
                    "maxQty": "1000" if linear else "1000000",
                    "stepSize": "0.001" if linear else "1",
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.001" if linear else "1",
                    "maxQty": "120" if linear else "60000",
                    "stepSize": "0.001" if linear else "1",
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
        }
        if linear:
            base["status"] = "TRADING"
            base["settlePlan"] = 0
            base["filters"].append({"filterType": "MIN_NOTIONAL", "notional": "100"})
        else:
            base["contractStatus"] = "TRADING"
            base["contractSize"] = int(inst.contract_size)
            base["equalQtyPrecision"] = 4
        return base

    def _um_exchange_info(self, p: Params) -> Json:
        syms = [s for s, i in self.engine.instruments.items() if i.kind == "linear"]
        margin_assets = sorted({self.engine.instruments[s].quote for s in syms})
        return {
            "timezone": "UTC",
            "serverTime": self.engine.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": self._rate_limits("fapi"),
            "exchangeFilters": [],
            "assets": [
                {"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"}
                for a in margin_assets
            ],
            "symbols": [self._futures_symbol(s) for s in syms],
        }

    def _cm_exchange_info(self, p: Params) -> Json:
        syms = [s for s, i in self.engine.instruments.items() if i.kind == "inverse"]
        return {
            "timezone": "UTC",
            "serverTime": self.engine.now_ms(),
            "rateLimits": self._rate_limits("dapi"),
            "exchangeFilters": [],
            "symbols": [self._futures_symbol(s) for s in syms],
        }

    def _network_of(self, asset: str) -> str:
        return "TRX" if asset in ("USDT", "USDC") else asset

    def _capital_config(self, p: Params) -> Json:
        out = []
        spot = self.engine.wallets[WalletKind.SPOT]
        for asset, decimals in self.engine.asset_decimals.items():
            line = spot.get(asset)
            step = (
                _s8(Decimal(1).scaleb(-decimals))
                if decimals <= 8
                else str(Decimal(1).scaleb(-decimals))
            )
            out.append(
                {
                    "coin": asset,
                    "depositAllEnable": True,
                    "withdrawAllEnable": True,
                    "name": asset,
                    "free": _s8(line.free) if line else "0",
                    "locked": _s8(line.locked) if line else "0",
                    "freeze": "0",
                    "withdrawing": "0",
                    "ipoing": "0",
                    "ipoable": "0",
                    "storage": "0",
                    "isLegalMoney": False,
                    "trading": True,
                    "networkList": [
                        {
                            "network": self._network_of(asset),
                            "coin": asset,
                            "withdrawIntegerMultiple": step,
                            "isDefault": True,
                            "depositEnable": True,
                            "withdrawEnable": True,
                            "depositDesc": "",
                            "withdrawDesc": "",
                            "specialTips": "",
                            "name": self._network_of(asset),
                            "resetAddressStatus": False,
                            "addressRegex": "^0x[0-9a-fA-F]{40}$",
                            "memoRegex": "",
                            "withdrawFee": "1",
                            "withdrawMin": "10",
                            "withdrawMax": "9999999999",
                            "minConfirm": 1,
                            "unLockConfirm": 0,
                            "sameAddress": False,
                            "estimatedArrivalTime": int(self.engine.config.withdraw_latency_s / 60),
                            "busy": False,
                        }
                    ],
                }
            )
        return out

    def _margin_pairs(self, p: Params) -> Json:
        return [
            {
                "id": i + 1,
                "symbol": b + q,
                "base": b,
                "quote": q,
                "isMarginTrade": True,
                "isBuyAllowed": True,
                "isSellAllowed": True,
            }
            for i, (b, q) in enumerate(self._spot_symbols())
        ]

    def _isolated_pairs(self, p: Params) -> Json:
        return [
            {
                "symbol": b + q,
                "base": b,
                "quote": q,
                "isMarginTrade": True,
                "isBuyAllowed": True,
                "isSellAllowed": True,
            }
            for b, q in self._spot_symbols()
        ]

    def _margin_price_index(self, p: Params) -> Json:
        """GET /sapi/v1/margin/priceIndex?symbol=BTCUSDT: the index Binance values margin
        collateral at, in the quote asset, with its calculation time (a frozen price keeps its
        old time, which is how a stale feed shows)."""
        base, quote = self.engine.spot_pair(self._require(p, "symbol")[0])
        px, at_ns = self.engine.asset_price_usd(base)
        quote_usd, _ = self.engine.asset_price_usd(quote)
        return {
            "calcTime": at_ns // 1_000_000,
            "price": _s8(px / quote_usd),
            "symbol": base + quote,
        }

    # -- accounts -----------------------------------------------------------------------------
    def _spot_account(self, p: Params) -> Json:
        self.engine.settle()
        spot = self.engine.wallets[WalletKind.SPOT]
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.engine.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": _s8(line.free), "locked": _s8(line.locked)}
                for a, line in spot.items()
            ],
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def _funding_assets(self, p: Params) -> Json:
        self.engine.settle()
        book = self.engine.wallets[WalletKind.FUNDING]
        asset = p.get("asset")
        return [
            {
                "asset": a,
                "free": _s8(line.free),
                "locked": _s8(line.locked),
                "freeze": "0",
                "withdrawing": "0",
                "btcValuation": "0",
            }
            for a, line in book.items()
            if asset is None or a == asset
        ]

    def _margin_account(self, p: Params) -> Json:
        self.engine.settle()
        book = self.engine.wallets[WalletKind.MARGIN]
        return {
            "created": True,
            "borrowEnabled": True,
            "marginLevel": "999.00000000",
            "collateralMarginLevel": "999.00000000",
            "totalAssetOfBtc": "0",
            "totalLiabilityOfBtc": "0",
            "totalNetAssetOfBtc": "0",
            "TotalCollateralValueInUSDT": "0",
            "totalOpenOrderLossInUSDT": "0",
            "tradeEnabled": True,
            "transferInEnabled": True,
            "transferOutEnabled": True,
            "accountType": "MARGIN_1",
            "userAssets": [
                {
                    "asset": a,
                    "borrowed": _s8(line.borrowed),
                    "free": _s8(line.free),
                    "interest": _s8(line.interest),
                    "locked": _s8(line.locked),
                    "netAsset": _s8(line.total - line.borrowed - line.interest),
                }
                for a, line in book.items()
            ],
        }

    def _futures_assets(self, wallet: WalletKind) -> tuple[list[Json], list[SimPosition]]:
        e = self.engine
        e.settle()
        book = e.wallets[wallet]
        positions = e.positions_in(wallet)
        upnl: dict[str, Decimal] = {}
        mm: dict[str, Decimal] = {}
        for pos in positions:
            asset = e.instruments[pos.symbol].margin_asset
            upnl[asset] = upnl.get(asset, Decimal(0)) + e.unrealized_pnl(pos)
            mm[asset] = mm.get(asset, Decimal(0)) + e.maint_margin(pos)
        assets = []
        for a in sorted(set(book) | set(upnl)):
            line = book.get(a)
            wallet_bal = line.free if line else Decimal(0)
            u = upnl.get(a, Decimal(0))
            m = mm.get(a, Decimal(0))
            avail = max(wallet_bal + min(u, Decimal(0)) - m, Decimal(0))
            assets.append(
                {
                    "asset": a,
                    "walletBalance": _s8(wallet_bal),
                    "unrealizedProfit": _s8(u),
                    "marginBalance": _s8(wallet_bal + u),
                    "maintMargin": _s8(m),
                    "initialMargin": _s8(2 * m),
                    "positionInitialMargin": _s8(2 * m),
                    "openOrderInitialMargin": "0.00000000",
                    "crossWalletBalance": _s8(wallet_bal),
                    "crossUnPnl": _s8(u),
                    "availableBalance": _s8(avail),
                    "maxWithdrawAmount": _s8(avail),
                    "marginAvailable": True,
                    "updateTime": e.now_ms(),
                }
            )
        return assets, positions

    def _um_account(self, p: Params) -> Json:
        e = self.engine
        assets, positions = self._futures_assets(WalletKind.UM)

        def total(key: str) -> str:
            return _s8(
                sum((Decimal(a[key]) for a in assets if a["asset"] in ("USDT", "USDC")), Decimal(0))
            )

        return {
            "feeTier": 0,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "tradeGroupId": -1,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "totalInitialMargin": total("initialMargin"),
            "totalMaintMargin": total("maintMargin"),
            "totalWalletBalance": total("walletBalance"),
            "totalUnrealizedProfit": total("unrealizedProfit"),
            "totalMarginBalance": total("marginBalance"),
            "totalPositionInitialMargin": total("positionInitialMargin"),
            "totalOpenOrderInitialMargin": "0.00000000",
            "totalCrossWalletBalance": total("crossWalletBalance"),
            "totalCrossUnPnl": total("crossUnPnl"),
            "availableBalance": total("availableBalance"),
            "maxWithdrawAmount": total("maxWithdrawAmount"),
            "assets": assets,
            "positions": [
                {
                    "symbol": pos.symbol,
                    "positionSide": pos.side,
                    "positionAmt": _s(pos.qty),
                    "unrealizedProfit": _s8(e.unrealized_pnl(pos)),
                    "isolatedMargin": "0",
                    "notional": _s8(e.notional(pos)),
                    "isolatedWallet": "0",
                    "initialMargin": _s8(2 * e.maint_margin(pos)),
                    "maintMargin": _s8(e.maint_margin(pos)),
                    "updateTime": e.now_ms(),
                }
                for pos in positions
            ],
        }

    def _cm_account(self, p: Params) -> Json:
        e = self.engine
        assets, positions = self._futures_assets(WalletKind.CM)
        return {
            "feeTier": 0,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "updateTime": 0,
            "assets": assets,
            "positions": [
                {
                    "symbol": pos.symbol,
                    "positionAmt": _s(pos.qty),
                    "initialMargin": _s8(2 * e.maint_margin(pos)),
                    "maintMargin": _s8(e.maint_margin(pos)),
                    "unrealizedProfit": _s8(e.unrealized_pnl(pos)),
                    "positionInitialMargin": _s8(2 * e.maint_margin(pos)),
                    "openOrderInitialMargin": "0",
                    "leverage": "20",
                    "isolated": False,
                    "positionSide": pos.side,
                    "entryPrice": _s8(pos.entry_price),
                    "breakEvenPrice": _s8(pos.entry_price),
                    "maxQty": "250",
                    "notionalValue": _s8(e.notional(pos)),
                    "isolatedWallet": "0",
                    "updateTime": e.now_ms(),
                }
                for pos in positions
            ],
        }

    def _pm_balance(self, p: Params) -> Json:
        e = self.engine
        if not e.config.portfolio_margin:
            raise SimError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        um_assets, _ = self._futures_assets(WalletKind.UM)
        cm_assets, _ = self._futures_assets(WalletKind.CM)
        um = {a["asset"]: a for a in um_assets}
        cm = {a["asset"]: a for a in cm_assets}
        margin = e.wallets[WalletKind.MARGIN]
        out = []
        wanted = p.get("asset")
        for a in sorted(set(margin) | set(um) | set(cm)):
            if wanted is not None and a != wanted:
                continue
            m = margin.get(a)
            m_total = m.total if m else Decimal(0)
            um_bal = Decimal(um[a]["walletBalance"]) if a in um else Decimal(0)
            cm_bal = Decimal(cm[a]["walletBalance"]) if a in cm else Decimal(0)
            out.append(
                {
                    "asset": a,
                    "totalWalletBalance": _s8(m_total + um_bal + cm_bal),
                    "crossMarginAsset": _s8(m_total),
                    "crossMarginBorrowed": _s8(m.borrowed if m else Decimal(0)),
                    "crossMarginFree": _s8(m.free if m else Decimal(0)),
                    "crossMarginInterest": _s8(m.interest if m else Decimal(0)),
                    "crossMarginLocked": _s8(m.locked if m else Decimal(0)),
                    "umWalletBalance": _s8(um_bal),
                    "umUnrealizedPNL": um[a]["unrealizedProfit"] if a in um else "0.00000000",
                    "cmWalletBalance": _s8(cm_bal),
                    "cmUnrealizedPNL": cm[a]["unrealizedProfit"] if a in cm else "0.00000000",
                    "updateTime": e.now_ms(),
                    "negativeBalance": "0.00000000",
                }
            )
        return out

    def _liquidation_price(self, pos: SimPosition) -> str:
        """An isolated-style estimate at 20x: mark × (1 ∓ 1/20 ± 0.5 %). Binance computes cross
        liquidation from the whole account; the simulator only needs a plausible positive price."""
        mark, _, _ = self.engine.mark(pos.symbol)
        factor = Decimal("0.955") if pos.qty > 0 else Decimal("1.045")
        return _s8(mark * factor)

    def _positions(self, wallet: WalletKind, p: Params) -> list[SimPosition]:
        self.engine.settle()
        symbol = p.get("symbol")
        return [pos for pos in self.engine.positions_in(wallet) if symbol in (None, pos.symbol)]

    def _um_position_risk(self, p: Params) -> Json:
        e = self.engine
        out = []
        for pos in self._positions(WalletKind.UM, p):
            mark, _, _ = e.mark(pos.symbol)
            mm = e.maint_margin(pos)
            out.append(
                {
                    "symbol": pos.symbol,
                    "positionSide": pos.side,
                    "positionAmt": _s(pos.qty),
                    "entryPrice": _s(pos.entry_price),
                    "breakEvenPrice": _s(pos.entry_price),
                    "markPrice": _s8(mark),
                    "unRealizedProfit": _s8(e.unrealized_pnl(pos)),
                    "liquidationPrice": self._liquidation_price(pos),
                    "isolatedMargin": "0",
                    "notional": _s8(e.notional(pos)),
                    "marginAsset": e.instruments[pos.symbol].margin_asset,
                    "isolatedWallet": "0",
                    "initialMargin": _s8(2 * mm),
                    "maintMargin": _s8(mm),
                    "positionInitialMargin": _s8(2 * mm),
                    "openOrderInitialMargin": "0",
                    "adl": 1,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": e.now_ms(),
                }
            )
        return out

    def _cm_position_risk(self, p: Params) -> Json:
        e = self.engine
        out = []
        for pos in self._positions(WalletKind.CM, p):
            mark, _, _ = e.mark(pos.symbol)
            out.append(
                {
                    "symbol": pos.symbol,
                    "positionAmt": _s(pos.qty),
                    "entryPrice": _s8(pos.entry_price),
                    "markPrice": _s8(mark),
                    "unRealizedProfit": _s8(e.unrealized_pnl(pos)),
                    "liquidationPrice": self._liquidation_price(pos),
                    "leverage": "20",
                    "maxQty": "250",
                    "marginType": "cross",
                    "isolatedMargin": "0.00000000",
                    "isAutoAddMargin": "false",
                    "positionSide": pos.side,
                    "notionalValue": _s8(e.notional(pos)),
                    "isolatedWallet": "0",
                    "updateTime": e.now_ms(),
                    "breakEvenPrice": _s8(pos.entry_price),
                }
            )
        return out

    def _pm_um_position_risk(self, p: Params) -> Json:
        if not self.engine.config.portfolio_margin:
            raise SimError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        keep = (
            "entryPrice",
            "markPrice",
            "positionAmt",
            "notional",
            "symbol",
            "unRealizedProfit",
            "liquidationPrice",
            "positionSide",
            "updateTime",
        )
        return [
            {**{k: r[k] for k in keep}, "leverage": "20", "maxNotionalValue": "50000000"}
            for r in self._um_position_risk(p)
        ]

    def _pm_cm_position_risk(self, p: Params) -> Json:
        if not self.engine.config.portfolio_margin:
            raise SimError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        keep = (
            "entryPrice",
            "leverage",
            "positionSide",
            "positionAmt",
            "maxQty",
            "markPrice",
            "unRealizedProfit",
            "liquidationPrice",
            "notionalValue",
            "symbol",
            "updateTime",
        )
        return [{k: r[k] for k in keep} for r in self._cm_position_risk(p)]

    def _premium(self, symbol: str, inverse: bool) -> Json:
        mark, index, at_ns = self.engine.mark(symbol)
        row: dict[str, Json] = {"symbol": symbol}
        if inverse:
            row["pair"] = symbol.split("_")[0]
        row.update(
            {
                "markPrice": _s8(mark),
                "indexPrice": _s8(index),
                "estimatedSettlePrice": _s8(index),
                "lastFundingRate": "0.00010000",
                "interestRate": "0.00010000",
                "nextFundingTime": (at_ns // 28_800_000_000_000 + 1) * 28_800_000,
                "time": at_ns // 1_000_000,
            }
        )
        return row

    def _premium_index(self, p: Params, kind: str) -> Json:
        inverse = kind == "inverse"
        syms = [s for s, i in self.engine.instruments.items() if i.kind == kind]
        symbol = p.get("symbol")
        if symbol is not None:
            if symbol not in syms:
                raise SimError(400, -1121, "Invalid symbol.")
            row = self._premium(symbol, inverse)
            return [row] if inverse else row
        return [self._premium(s, inverse) for s in syms]

    def _um_premium_index(self, p: Params) -> Json:
        return self._premium_index(p, "linear")

    def _cm_premium_index(self, p: Params) -> Json:
        return self._premium_index(p, "inverse")

    def _um_brackets(self, p: Params) -> Json:
        return self._brackets(p, "linear")

    def _cm_brackets(self, p: Params) -> Json:
        return self._brackets(p, "inverse")

    def _brackets(self, p: Params, kind: str) -> Json:
        """leverageBracket rows; COIN-M tables are in coin (``qtyFloor``/``qtyCap``) at the
        current index, USDⓈ-M ones in quote notional (``notionalFloor``/``notionalCap``)."""
        out = []
        for symbol, inst in self.engine.instruments.items():
            if inst.kind != kind or symbol not in self.engine.brackets:
                continue
            if p.get("symbol") not in (None, symbol):
                continue
            rows = []
            cum = Decimal(0)
            prev = self.engine.brackets[symbol][0][2]
            for i, (floor, cap, mmr, lev) in enumerate(self.engine.brackets[symbol], start=1):
                cum += floor * (mmr - prev)
                prev = mmr
                if kind == "linear":
                    rows.append(
                        {
                            "bracket": i,
                            "initialLeverage": lev,
                            "notionalCap": int(cap)
                            if cap is not None
                            else 9_223_372_036_854_775_807,
                            "notionalFloor": int(floor),
                            "maintMarginRatio": float(mmr),
                            "cum": float(cum),
                        }
                    )
                else:
                    _, index, _ = self.engine.mark(symbol)
                    rows.append(
                        {
                            "bracket": i,
                            "initialLeverage": lev,
                            "qtyCap": float(cap / index)
                            if cap is not None
                            else 9_223_372_036_854_775_807,
                            "qtyFloor": float(floor / index),
                            "maintMarginRatio": float(mmr),
                            "cum": float(cum / index),
                        }
                    )
            out.append({"symbol": symbol, "brackets": rows})
        return out

    # -- transfers, conversions, withdrawals --------------------------------------------------
    def _require(self, p: Params, *names: str) -> list[str]:
        missing = [n for n in names if not p.get(n)]
        if missing:
            raise SimError(
                400,
                -1102,
                f"Mandatory parameter '{missing[0]}' was not sent, was empty/null, or malformed.",
            )
        return [p[n] for n in names]

    def _transfer(self, p: Params) -> Json:
        t_type, asset, amount = self._require(p, "type", "asset", "amount")
        t = self.engine.transfer(t_type, asset, amount)
        return {"tranId": t.tran_id}

    def _transfer_history(self, p: Params) -> Json:
        (t_type,) = self._require(p, "type")
        self.engine.settle()
        start = int(p.get("startTime", 0))
        end = int(p.get("endTime", 2**62))
        size = min(int(p.get("size", 10)), 100)
        current = max(int(p.get("current", 1)), 1)
        shown_until_ns = self.engine.now_ns() - self.engine.faults.history_lag_ns
        rows = [
            t
            for t in self.engine.transfers
            if t.type == t_type
            and start <= t.ts_ns // 1_000_000 <= end
            and t.ts_ns <= shown_until_ns  # a lagging history shows it later (FaultPlan)
        ]
        rows.sort(key=lambda t: t.ts_ns, reverse=True)
        page = rows[(current - 1) * size : current * size]
        return {
            "total": len(rows),
            "rows": [
                {
                    "asset": t.asset,
                    "amount": _s(t.amount),
                    "type": t.type,
                    "status": t.status,
                    "tranId": t.tran_id,
                    "timestamp": t.ts_ns // 1_000_000,
                }
                for t in page
            ],
        }

    def _convert_quote(self, p: Params) -> Json:
        from_asset, to_asset, amount = self._require(p, "fromAsset", "toAsset", "fromAmount")
        match p.get("walletType", "SPOT"):
            case "SPOT":
                wallet = WalletKind.SPOT
            case "FUNDING":
                wallet = WalletKind.FUNDING
            case other:
                raise SimError(400, -1130, f"Invalid walletType {other}")
        q = self.engine.convert_quote(from_asset, to_asset, amount, wallet)
        return {
            "quoteId": q.quote_id,
            "ratio": _s(q.ratio),
            "inverseRatio": _s((1 / q.ratio).quantize(Decimal("0.00000001"))),
            "validTimestamp": q.valid_until_ns // 1_000_000,
            "toAmount": _s(q.to_amount),
            "fromAmount": _s(q.from_amount),
        }

    def _convert_accept(self, p: Params) -> Json:
        (quote_id,) = self._require(p, "quoteId")
        order = self.engine.accept_quote(quote_id)
        return {
            "orderId": str(order.order_id),
            "createTime": order.ts_ns // 1_000_000,
            "orderStatus": "SUCCESS",
        }

    def _convert_status(self, p: Params) -> Json:
        """GET /sapi/v1/convert/orderStatus by ``orderId`` or ``quoteId`` (one of the two)."""
        order_id, quote_id = p.get("orderId"), p.get("quoteId")
        if bool(order_id) == bool(quote_id):
            raise SimError(400, -1102, "Send exactly one of 'orderId' and 'quoteId'.")
        if quote_id:
            found = self.engine.quote_orders.get(quote_id)
        else:
            found = int(order_id) if order_id and order_id.isdigit() else None
        order = None if found is None else self.engine.convert_orders.get(found)
        if order is None:
            raise SimError(400, -345233, "Order does not exist.")
        q = order.quote
        return {
            "orderId": order.order_id,
            "orderStatus": order.status,
            "fromAsset": q.from_asset,
            "fromAmount": _s(q.from_amount),
            "toAsset": q.to_asset,
            "toAmount": _s(q.to_amount),
            "ratio": _s(q.ratio),
            "inverseRatio": _s((1 / q.ratio).quantize(Decimal("0.00000001"))),
            "createTime": order.ts_ns // 1_000_000,
        }

    def _place_margin_order(self, p: Params) -> SimMarginOrder:
        symbol, side, order_type = self._require(p, "symbol", "side", "type")
        if p.get("sideEffectType", "NO_SIDE_EFFECT") != "NO_SIDE_EFFECT":
            raise SimError(400, -1130, "The simulator fills margin orders without borrowing.")
        client_id = p.get("newClientOrderId") or f"sim{self.engine.next_id()}"
        return self.engine.margin_order(
            symbol,
            side,
            order_type,
            quantity=p.get("quantity"),
            quote_qty=p.get("quoteOrderQty"),
            client_id=client_id,
        )

    @staticmethod
    def _order_fields(order: SimMarginOrder) -> dict[str, Json]:
        return {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "clientOrderId": order.client_id,
            "price": "0.00000000",  # a MARKET order has no limit price
            "origQty": _s8(order.base_qty),
            "executedQty": _s8(order.base_qty),
            "cummulativeQuoteQty": _s8(order.quote_qty),
            "status": order.status,
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": order.side,
        }

    def _fills(self, order: SimMarginOrder) -> list[Json]:
        _, quote = self.engine.spot_pair(order.symbol)
        return [
            {
                "price": _s8(order.avg_price),
                "qty": _s8(order.base_qty),
                "commission": "0.00000000",  # the pair's book costs are in the price
                "commissionAsset": quote,
                "tradeId": order.order_id,
            }
        ]

    def _margin_order(self, p: Params) -> Json:
        """POST /sapi/v1/margin/order, answered as ``newOrderRespType=FULL`` (ccxt's default)."""
        order = self._place_margin_order(p)
        return {
            **self._order_fields(order),
            "transactTime": order.ts_ns // 1_000_000,
            "isIsolated": False,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "fills": self._fills(order),
        }

    def _pm_margin_order(self, p: Params) -> Json:
        """POST /papi/v1/margin/order (Portfolio Margin accounts only)."""
        if not self.engine.config.portfolio_margin:
            raise SimError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        order = self._place_margin_order(p)
        return {
            **self._order_fields(order),
            "transactTime": order.ts_ns // 1_000_000,
            "fills": self._fills(order),
        }

    def _find_margin_order(self, p: Params) -> SimMarginOrder:
        (symbol,) = self._require(p, "symbol")
        client_id, order_id = p.get("origClientOrderId"), p.get("orderId")
        found = None
        if client_id:
            found = self.engine.find_margin_order(symbol, client_id)
        elif order_id:
            found = next(
                (o for o in self.engine.margin_orders if str(o.order_id) == order_id), None
            )
        else:
            raise SimError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent.")
        if found is None:
            raise SimError(400, -2013, "Order does not exist.")
        return found

    def _order_query_fields(self, order: SimMarginOrder) -> dict[str, Json]:
        ms = order.ts_ns // 1_000_000
        return {
            **self._order_fields(order),
            "icebergQty": "0.00000000",
            "isWorking": True,
            "stopPrice": "0.00000000",
            "time": ms,
            "updateTime": ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _margin_order_query(self, p: Params) -> Json:
        """GET /sapi/v1/margin/order: by ``origClientOrderId`` (our key) or ``orderId``."""
        return {**self._order_query_fields(self._find_margin_order(p)), "isIsolated": False}

    def _pm_margin_order_query(self, p: Params) -> Json:
        """GET /papi/v1/margin/order."""
        if not self.engine.config.portfolio_margin:
            raise SimError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return self._order_query_fields(self._find_margin_order(p))

    def _withdraw(self, p: Params) -> Json:
        coin, address, amount = self._require(p, "coin", "address", "amount")
        network = p.get("network") or self._network_of(coin)
        w = self.engine.withdraw(coin, amount, address, network, p.get("withdrawOrderId"))
        return {"id": w.id}

    @staticmethod
    def _fmt_time(ts_ns: int) -> str:
        return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")

    def _withdraw_history(self, p: Params) -> Json:
        """GET /sapi/v1/capital/withdraw/history, filtered by ``coin`` and ``withdrawOrderId``."""
        self.engine.settle()
        coin = p.get("coin")
        client_id = p.get("withdrawOrderId")
        return [
            {
                "id": w.id,
                "amount": _s(w.amount - w.fee),
                "transactionFee": _s(w.fee),
                "coin": w.asset,
                "status": w.status,
                "address": w.address,
                "txId": w.tx_id,
                "applyTime": self._fmt_time(w.ts_ns),
                "network": w.network,
                "transferType": 0,
                "withdrawOrderId": w.client_id or "",
                "info": "",
                "confirmNo": 1 if w.status == 6 else 0,
                "walletType": 0,
                "txKey": "",
                "completeTime": self._fmt_time(w.complete_ns) if w.status == 6 else "",
            }
            for w in self.engine.withdrawals
            if coin in (None, w.asset) and client_id in (None, w.client_id)
        ]

    def _deposit_history(self, p: Params) -> Json:
        self.engine.settle()
        coin = p.get("coin")
        start = int(p.get("startTime", 0))
        return [
            {
                "id": d.id,
                "amount": _s(d.amount),
                "coin": d.asset,
                "network": d.network,
                "status": d.status,
                "address": d.address,
                "addressTag": "",
                "txId": d.tx_id,
                "insertTime": d.ts_ns // 1_000_000,
                "transferType": 0,
                "confirmTimes": "1/1" if d.status == 1 else "0/1",
                "unlockConfirm": 0,
                "walletType": 0,
            }
            for d in self.engine.deposits
            if coin in (None, d.asset) and d.ts_ns // 1_000_000 >= start
        ]

    def _deposit_address(self, p: Params) -> Json:
        (coin,) = self._require(p, "coin")
        address = self.engine.deposit_address(coin)
        return {"coin": coin, "address": address, "tag": "", "url": "", "isDefault": 1}
