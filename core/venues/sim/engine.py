"""The simulated exchange: wallets, positions, prices, transfers, conversions, withdrawals.

It is an *exchange*, not a mock: it keeps books (free/locked/borrowed per wallet and asset),
applies Binance's rules for the operations pmr uses, and refuses what Binance would refuse with
Binance's error codes (:class:`SimError`). :mod:`core.venues.sim.dialect` speaks Binance's REST
JSON on top of it; :class:`~core.venues.ccxt_venue.CcxtVenue` talks to that dialect through real
ccxt, in-process or over loopback HTTP.

Time is an injected :class:`~core.clock.Clock`: transfers are debited at once and credited
``transfer_latency_s`` later; withdrawals reach the other venue ``withdraw_latency_s`` later.
Pending work is settled lazily whenever the engine is touched, so a ``ManualClock`` drives it.
Work can also be *deferred* (:meth:`SimExchange.defer`): a request the venue books late (the
``LATE_APPLY`` fault) runs when its time comes, stamped with that time.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Literal

from core.clock import Clock
from core.domain import WalletKind
from core.redact import register_secret
from core.venues.capabilities import BINANCE_WEIGHT_LIMITS_PER_MIN
from core.venues.sim.faults import FaultPlan
from core.venues.sim.options import OptionBook, OptionQuote, SimOption
from core.venues.sim.prices import PricePath
from core.venues.wallets import BINANCE_TRANSFER_TYPES, parse_binance_transfer_type

__all__ = [
    "DEFAULT_WEIGHT_LIMITS_PER_MIN",
    "SimConfig",
    "SimConvertQuote",
    "SimDeposit",
    "SimError",
    "SimExchange",
    "SimInstrument",
    "SimMarginOrder",
    "SimNetwork",
    "SimPosition",
    "SimTransfer",
    "SimWithdrawal",
    "WalletLine",
]

ZERO = Decimal(0)
_Q8 = Decimal("0.00000001")

# The published limits live with the capabilities (one table for the adapter, the simulator and
# the router); the simulator charges the same.
DEFAULT_WEIGHT_LIMITS_PER_MIN: Mapping[str, int] = BINANCE_WEIGHT_LIMITS_PER_MIN

# Withdrawal fees charged by the simulator (asset units), close to Binance's usual ones.
_DEFAULT_WITHDRAW_FEES: Mapping[str, Decimal] = {
    "USDT": Decimal("1"),
    "USDC": Decimal("1"),
    "BTC": Decimal("0.0002"),
    "ETH": Decimal("0.0015"),
    "SOL": Decimal("0.01"),
    "DOGE": Decimal("4"),
}


class SimError(Exception):
    """A refusal in Binance's words: HTTP status, Binance code and message."""

    def __init__(self, http_status: int, code: int, msg: str) -> None:
        self.http_status = http_status
        self.code = code
        self.msg = msg
        super().__init__(f"{http_status} {code} {msg}")


@dataclass(slots=True)
class WalletLine:
    """One asset in one wallet: ``free`` + ``locked`` held, ``borrowed`` + ``interest`` owed."""

    free: Decimal = ZERO
    locked: Decimal = ZERO
    borrowed: Decimal = ZERO
    interest: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class SimInstrument:
    """A futures contract the simulator marks: linear (UM) or inverse (CM) perpetual."""

    symbol: str
    kind: Literal["linear", "inverse"]
    underlying: str
    quote: str
    contract_size: Decimal
    basis_frac: Decimal = ZERO  # mark = index × (1 + basis)

    @property
    def margin_asset(self) -> str:
        return self.quote if self.kind == "linear" else self.underlying

    @property
    def wallet(self) -> WalletKind:
        return WalletKind.UM if self.kind == "linear" else WalletKind.CM


@dataclass(slots=True)
class SimPosition:
    symbol: str
    qty: Decimal  # contracts, signed
    entry_price: Decimal
    side: Literal["BOTH", "LONG", "SHORT"] = "BOTH"  # Binance positionSide (hedge-mode leg)


@dataclass(slots=True)
class SimTransfer:
    tran_id: int
    type: str
    asset: str
    amount: Decimal
    ts_ns: int
    credit_ns: int
    status: Literal["PENDING", "CONFIRMED", "FAILED"] = "PENDING"


@dataclass(frozen=True, slots=True)
class SimConvertQuote:
    quote_id: str
    from_asset: str
    to_asset: str
    from_amount: Decimal
    to_amount: Decimal
    ratio: Decimal
    valid_until_ns: int
    wallet: WalletKind


@dataclass(slots=True)
class SimConvertOrder:
    order_id: int
    quote: SimConvertQuote
    ts_ns: int
    status: str = "SUCCESS"


@dataclass(frozen=True, slots=True)
class SimMarginOrder:
    """A filled MARKET order on the cross-margin book (the simulator fills in one go)."""

    order_id: int
    client_id: str
    symbol: str
    side: str  # BUY | SELL
    base_qty: Decimal
    quote_qty: Decimal
    ts_ns: int
    status: str = "FILLED"

    @property
    def avg_price(self) -> Decimal:
        return (self.quote_qty / self.base_qty).quantize(Decimal("0.00000001"), ROUND_DOWN)


@dataclass(slots=True)
class SimWithdrawal:
    id: str
    asset: str
    amount: Decimal
    fee: Decimal
    address: str
    network: str
    ts_ns: int
    complete_ns: int
    tx_id: str
    client_id: str | None
    status: int = 4  # 4 processing, 6 completed (Binance withdraw status enum)


@dataclass(slots=True)
class SimDeposit:
    id: str
    asset: str
    amount: Decimal
    address: str
    network: str
    tx_id: str
    ts_ns: int
    credit_ns: int
    status: int = 0  # 0 pending, 1 success (Binance deposit status enum)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Behaviour of one simulated venue (built from ``core.config.SimSettings``)."""

    seed: int = 0
    price_vol_annual_frac: float = 0.6
    transfer_latency_s: float = 0.05
    withdraw_latency_s: float = 1200.0
    weight_limits_per_min: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_WEIGHT_LIMITS_PER_MIN)
    )
    ban_s: int = 120
    convert_quote_valid_s: int = 10
    default_convert_levels: tuple[tuple[Decimal, Decimal], ...] = (
        (Decimal(1_000_000), Decimal(5)),
        (Decimal(4_000_000), Decimal(15)),
        (Decimal(20_000_000), Decimal(50)),
    )
    portfolio_margin: bool = False
    # Prices stay at the desk's and options do not decay (``pmr sim serve --prices frozen``).
    frozen_prices: bool = False
    # Credentials clients must present; never shown by repr() (they end up in logs otherwise).
    api_key: str = field(default="sim-key", repr=False)
    api_secret: str = field(default="sim-secret", repr=False)


class SimNetwork:
    """The "blockchain" between simulated venues: addresses → venue, with on-chain latency."""

    def __init__(self) -> None:
        self._venues: dict[str, SimExchange] = {}
        self._addresses: dict[str, tuple[str, str]] = {}
        self.lock = threading.RLock()  # one lock: a withdrawal touches two venues

    def venues(self) -> tuple[SimExchange, ...]:
        return tuple(self._venues.values())

    def join(self, exchange: SimExchange) -> None:
        self._venues[exchange.name] = exchange

    def address_of(self, venue: str, asset: str) -> str:
        digest = hashlib.sha256(f"pmr-sim:{venue}:{asset}".encode()).hexdigest()[:40]
        address = "0x" + digest
        self._addresses[address] = (venue, asset)
        return address

    def settle_all(self) -> None:
        for venue in list(self._venues.values()):
            venue.settle_local()
        for venue in list(self._venues.values()):
            venue.settle_local()  # credit deposits delivered during the first pass

    def deliver(self, w: SimWithdrawal, from_venue: str) -> None:
        target = self._addresses.get(w.address)
        if target is None:
            return  # an address outside the simulation: the coins leave the system
        venue, asset = target
        if asset != w.asset or venue not in self._venues:
            return
        self._venues[venue].receive_deposit(w, from_venue)


class SimExchange:
    """One simulated Binance account.

    Parameters
    ----------
    name
        Venue name (``sim-a``).
    clock
        Injected clock; a ``ManualClock`` in tests.
    asset_decimals
        Transfer precision per asset (Binance ``withdrawIntegerMultiple``).
    prices_usd
        Initial USD price per asset; drives the seeded path.
    instruments
        Futures contracts (UM linear, CM inverse) with their basis to the index.
    options
        Binance European options (``eapi``), marked by Black-76 from their seeded marks
        (:mod:`core.venues.sim.options`).
    config
        Latencies, limits, seed, convert book.
    stable_assets
        Assets whose price does not move on the seeded path.
    brackets
        Per-symbol ``(floor_usd, cap_usd | None, mmr, max_leverage)`` maintenance tables.
    convert_levels
        ``(from_asset, to_asset) → ((width_usd, cost_bps), …)`` books; others use the default.
    network
        Shared :class:`SimNetwork` for withdrawals between simulated venues.
    """

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        asset_decimals: Mapping[str, int],
        prices_usd: Mapping[str, Decimal],
        instruments: Iterable[SimInstrument] = (),
        options: Iterable[SimOption] = (),
        config: SimConfig | None = None,
        stable_assets: frozenset[str] = frozenset({"USDT", "USDC"}),
        brackets: Mapping[str, tuple[tuple[Decimal, Decimal | None, Decimal, int], ...]]
        | None = None,
        convert_levels: Mapping[tuple[str, str], tuple[tuple[Decimal, Decimal], ...]] | None = None,
        network: SimNetwork | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.config = config or SimConfig()
        register_secret(self.config.api_key)  # masked in every log line and error text
        register_secret(self.config.api_secret)
        self.lock = network.lock if network is not None else threading.RLock()
        self.faults = FaultPlan()
        self.asset_decimals = dict(asset_decimals)
        self.instruments = {i.symbol: i for i in instruments}
        self.brackets = dict(brackets or {})
        self.convert_levels = dict(convert_levels or {})
        self.prices = PricePath(
            prices_usd,
            seed=self.config.seed,
            vol_annual_frac=self.config.price_vol_annual_frac,
            stable_assets=stable_assets,
            start_ns=clock.timestamp_ns(),
        )
        self.wallets: dict[WalletKind, dict[str, WalletLine]] = {k: {} for k in WalletKind}
        self.positions: dict[tuple[str, str], SimPosition] = {}  # (symbol, positionSide)
        self.transfers: list[SimTransfer] = []
        self.quotes: dict[str, SimConvertQuote] = {}
        self.convert_orders: dict[int, SimConvertOrder] = {}
        self.margin_orders: list[SimMarginOrder] = []
        self.withdrawals: list[SimWithdrawal] = []
        self.deposits: list[SimDeposit] = []
        self._ids = itertools.count(1)
        self._tran_ids = itertools.count(100_000_001)
        self._pending_credit: deque[SimTransfer] = deque()
        self.quote_orders: dict[str, int] = {}  # accepted quote id → convert order id
        self._deferred: list[tuple[int, int, Callable[[], object]]] = []  # heap by due time
        self._deferred_seq = itertools.count()
        self._as_of_ns: int | None = None  # set while deferred work runs at its own time
        self.deferred_errors: list[SimError] = []  # late requests the venue refused
        self.network = network
        if network is not None:
            network.join(self)
        self.requests_served = 0
        listed = tuple(options)  # marked from the seed instant on (core.venues.sim.options)
        self.option_book = OptionBook(
            listed,
            seed_forwards={o.symbol: self.option_forward(o)[0] for o in listed},
            seed_ns=clock.timestamp_ns(),
            frozen_time=self.config.frozen_prices,
        )

    # -- set-up -------------------------------------------------------------------------------
    def fund(
        self,
        wallet: WalletKind,
        asset: str,
        amount: Decimal,
        *,
        loan: Decimal = ZERO,
        interest: Decimal = ZERO,
    ) -> None:
        """Seed a wallet (desk config ``[[balances]]``); ``pm`` seeds the PM margin wallet."""
        self._require_asset(asset)
        line = self._line(self._book(WalletKind(wallet)), asset)
        line.free += Decimal(amount)
        line.borrowed += Decimal(loan)
        line.interest += Decimal(interest)

    def open_position(
        self,
        symbol: str,
        qty: Decimal,
        entry_price: Decimal,
        side: Literal["BOTH", "LONG", "SHORT"] = "BOTH",
    ) -> None:
        """Seed a futures position (desk config ``[[positions]]`` in ``um``/``cm``).

        ``side`` LONG / SHORT seeds a hedge-mode leg (Binance ``dualSidePosition``): the two
        legs of a symbol are separate positions; a symbol is either one-way (BOTH) or hedged.
        """
        if symbol not in self.instruments:
            raise KeyError(f"unknown instrument {symbol!r} on simulated venue {self.name}")
        q = Decimal(qty)
        if (side == "LONG" and q < 0) or (side == "SHORT" and q > 0):
            raise ValueError(f"a {side} leg of {symbol} cannot hold {q}")
        other_mode = {"BOTH"} if side != "BOTH" else {"LONG", "SHORT"}
        if any((symbol, s) in self.positions for s in other_mode):
            raise ValueError(f"{symbol} cannot be one-way and hedge mode at once")
        self.positions[(symbol, side)] = SimPosition(symbol, q, Decimal(entry_price), side)

    def open_option_position(self, symbol: str, qty: Decimal, entry_price: Decimal) -> None:
        """Seed a held option (desk config ``[[positions]]`` in ``options``); short < 0."""
        if symbol not in self.option_book.options:
            raise KeyError(f"unknown option {symbol!r} on simulated venue {self.name}")
        self.option_book.open_position(symbol, qty, entry_price)

    # -- helpers ------------------------------------------------------------------------------
    def _book(self, wallet: WalletKind) -> dict[str, WalletLine]:
        # A Binance PM account's transfer entry point is its cross-margin wallet.
        return self.wallets[WalletKind.MARGIN if wallet is WalletKind.PM else wallet]

    @staticmethod
    def _line(book: dict[str, WalletLine], asset: str) -> WalletLine:
        line = book.get(asset)
        if line is None:
            line = book[asset] = WalletLine()
        return line

    def _require_asset(self, asset: str) -> None:
        if asset not in self.asset_decimals:
            raise SimError(400, -5003, "You don't have this asset.")

    def now_ns(self) -> int:
        """The venue's time: the clock's, or a deferred request's own time while it runs."""
        return self._as_of_ns if self._as_of_ns is not None else self.clock.timestamp_ns()

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    def defer(self, delay_s: float, work: Callable[[], object]) -> None:
        """Run ``work`` ``delay_s`` from now, stamped with that time (a request booked late).

        A ``SimError`` it raises (the late request refused, e.g. insufficient funds by then) is
        kept in ``deferred_errors``: nobody is listening for the answer any more.
        """
        due = self.clock.timestamp_ns() + round(delay_s * 1e9)
        heapq.heappush(self._deferred, (due, next(self._deferred_seq), work))

    def deferred_pending(self) -> int:
        """Requests still waiting to be booked late."""
        return len(self._deferred)

    def _run_deferred(self) -> None:
        if self._as_of_ns is not None:
            return  # already inside deferred work: it settles at its own time
        now = self.clock.timestamp_ns()
        while self._deferred and self._deferred[0][0] <= now:
            due, _, work = heapq.heappop(self._deferred)
            self._as_of_ns = due
            try:
                work()
            except SimError as exc:
                self.deferred_errors.append(exc)
            finally:
                self._as_of_ns = None

    def next_id(self) -> int:
        return next(self._ids)

    def settle(self) -> None:
        """Credit transfers and deposits whose latency has passed; complete withdrawals.

        With a network, every venue on it settles, so a deposit shows up on the receiving venue
        whichever venue is touched first.
        """
        if self.network is not None:
            self.network.settle_all()
        else:
            self.settle_local()

    def settle_local(self) -> None:
        """Settle this venue only (the network calls it on every member)."""
        self._run_deferred()
        now = self.now_ns()
        while self._pending_credit and self._pending_credit[0].credit_ns <= now:
            t = self._pending_credit.popleft()
            _, dst = parse_binance_transfer_type(t.type)
            self._line(self._book(dst), t.asset).free += t.amount
            t.status = "CONFIRMED"
        for w in self.withdrawals:
            if w.status == 4 and w.complete_ns <= now:
                w.status = 6
                if self.network is not None:
                    self.network.deliver(w, self.name)
        for d in self.deposits:
            if d.status == 0 and d.credit_ns <= now:
                d.status = 1
                self._line(self.wallets[WalletKind.SPOT], d.asset).free += d.amount

    # -- prices -------------------------------------------------------------------------------
    def asset_price_usd(self, asset: str) -> tuple[Decimal, int]:
        if asset in ("USD",):
            return Decimal(1), self.now_ns()
        return self.prices.price_usd(asset, self.now_ns())

    def mark(self, symbol: str) -> tuple[Decimal, Decimal, int]:
        """Return ``(mark, index, as_of_ns)`` of a futures symbol."""
        inst = self.instruments[symbol]
        index, at = self.asset_price_usd(inst.underlying)
        quote_usd, _ = self.asset_price_usd(inst.quote)
        index_q = index / quote_usd if inst.kind == "linear" else index
        mark = (index_q * (1 + inst.basis_frac)).quantize(Decimal("0.00000001"))
        return mark, index_q.quantize(Decimal("0.00000001")), at

    def option_forward(self, opt: SimOption) -> tuple[Decimal, int]:
        """``(index, as_of_ns)``: the underlying's price in the option's quote (Binance
        ``/eapi/v1/index``), stamped with the underlying's time (stale when it is frozen)."""
        px, at = self.asset_price_usd(opt.underlying)
        quote_usd, _ = self.asset_price_usd(opt.quote)
        return (px / quote_usd).quantize(_Q8), at

    def option_quote(self, symbol: str) -> OptionQuote:
        """The mark, index, IV and greeks of a listed option now."""
        opt = self.option_book.options[symbol]
        forward, at = self.option_forward(opt)
        return self.option_book.quote(symbol, forward, at, self.now_ns())

    def unrealized_pnl(self, pos: SimPosition) -> Decimal:
        """Linear: qty·size·(mark − entry) in quote; inverse: qty·face·(1/entry − 1/mark) in coin."""
        inst = self.instruments[pos.symbol]
        mark, _, _ = self.mark(pos.symbol)
        if inst.kind == "linear":
            return pos.qty * inst.contract_size * (mark - pos.entry_price)
        return pos.qty * inst.contract_size * (1 / pos.entry_price - 1 / mark)

    def notional(self, pos: SimPosition) -> Decimal:
        """Signed notional: quote units (linear) or coin units (inverse, face / mark)."""
        inst = self.instruments[pos.symbol]
        mark, _, _ = self.mark(pos.symbol)
        if inst.kind == "linear":
            return pos.qty * inst.contract_size * mark
        return pos.qty * inst.contract_size / mark

    def maint_margin(self, pos: SimPosition) -> Decimal:
        """Bracket MM = |notional|·mmr − cum (USD notional, cum continuous across brackets)."""
        inst = self.instruments[pos.symbol]
        mark, _, _ = self.mark(pos.symbol)
        notional_usd = abs(pos.qty) * inst.contract_size * (mark if inst.kind == "linear" else 1)
        table = self.brackets.get(pos.symbol) or ((ZERO, None, Decimal("0.005"), 20),)
        cum = ZERO
        prev_mmr = table[0][2]
        for floor, cap, mmr, _ in table:
            cum += floor * (mmr - prev_mmr)
            prev_mmr = mmr
            if cap is None or notional_usd < cap:
                mm_usd = notional_usd * mmr - cum
                return mm_usd if inst.kind == "linear" else mm_usd / mark
        return ZERO

    def positions_in(self, wallet: WalletKind) -> list[SimPosition]:
        return [p for p in self.positions.values() if self.instruments[p.symbol].wallet is wallet]

    # -- transfers ----------------------------------------------------------------------------
    def check_amount(self, asset: str, raw: str) -> Decimal:
        self._require_asset(asset)
        try:
            amount = Decimal(raw)
        except ArithmeticError:
            raise SimError(400, -1100, "Illegal characters found in parameter 'amount'.") from None
        if not amount.is_finite() or amount <= 0:
            raise SimError(400, -1102, "Parameter 'amount' was empty or malformed.")
        step = Decimal(1).scaleb(-self.asset_decimals[asset])
        if amount.quantize(step, rounding=ROUND_DOWN) != amount:
            raise SimError(400, -1111, "Precision is over the maximum defined for this asset.")
        return amount

    def transfer(self, transfer_type: str, asset: str, raw_amount: str) -> SimTransfer:
        """Apply a universal transfer (POST /sapi/v1/asset/transfer) or raise ``SimError``."""
        self.settle()
        if transfer_type not in BINANCE_TRANSFER_TYPES.values():
            raise SimError(400, -1130, f"Invalid data sent for a parameter: type={transfer_type}")
        src, dst = parse_binance_transfer_type(transfer_type)
        if WalletKind.PM in (src, dst) and not self.config.portfolio_margin:
            raise SimError(400, -9000, "Portfolio Margin account is not enabled.")
        if self.faults.venue_halted or (src, dst) in self.faults.halted_pairs:
            raise SimError(400, -1020, "This operation is not supported.")
        amount = self.check_amount(asset, raw_amount)
        line = self._line(self._book(src), asset)
        if line.free < amount:
            raise SimError(400, -5013, "Asset transfer failed: insufficient balance")
        line.free -= amount
        now = self.now_ns()
        t = SimTransfer(
            next(self._tran_ids),
            transfer_type,
            asset,
            amount,
            now,
            now + round(self.config.transfer_latency_s * 1e9),
        )
        self.transfers.append(t)
        self._pending_credit.append(t)
        self.settle()
        return t

    # -- conversions --------------------------------------------------------------------------
    def convert_quote(
        self, from_asset: str, to_asset: str, raw_amount: str, wallet: WalletKind
    ) -> SimConvertQuote:
        """Quote ``from_amount`` → ``to_asset`` walking a convex book (cost rises with size)."""
        self.settle()
        if self.faults.venue_halted:
            raise SimError(400, -1020, "This operation is not supported.")
        if from_asset == to_asset:
            raise SimError(400, -1130, "fromAsset and toAsset are the same.")
        amount = self.check_amount(from_asset, raw_amount)
        self._require_asset(to_asset)
        px_from, _ = self.asset_price_usd(from_asset)
        px_to, _ = self.asset_price_usd(to_asset)
        out_usd = self._walk_book(from_asset, to_asset, amount * px_from)
        if out_usd is None:
            raise SimError(400, -23000, "Quote amount exceeds the available liquidity.")
        step = Decimal(1).scaleb(-self.asset_decimals[to_asset])
        to_amount = (out_usd / px_to).quantize(step, rounding=ROUND_DOWN)
        ratio = (to_amount / amount).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
        q = SimConvertQuote(
            hashlib.sha256(f"{self.name}:{self.next_id()}".encode()).hexdigest()[:32],
            from_asset,
            to_asset,
            amount,
            to_amount,
            ratio,
            self.now_ns() + self.config.convert_quote_valid_s * 1_000_000_000,
            wallet,
        )
        self.quotes[q.quote_id] = q
        return q

    def _walk_book(self, from_asset: str, to_asset: str, value_usd: Decimal) -> Decimal | None:
        """USD value received for ``value_usd`` sold through the pair's convex book (the desk's
        ``[[swaps]] levels``, fees and slippage together); ``None`` if the book is too thin."""
        levels = self.convert_levels.get((from_asset, to_asset), self.config.default_convert_levels)
        left = value_usd
        out_usd = ZERO
        for width, cost_bps in levels:
            take = min(left, width)
            out_usd += take * (1 - cost_bps / Decimal(10_000))
            left -= take
            if left <= 0:
                return out_usd
        return None

    def accept_quote(self, quote_id: str) -> SimConvertOrder:
        self.settle()
        q = self.quotes.get(quote_id)
        if q is None:
            raise SimError(400, -345233, "Quote does not exist.")
        if self.now_ns() > q.valid_until_ns:
            raise SimError(400, -345239, "Quote expired. Please try again.")
        line = self._line(self._book(q.wallet), q.from_asset)
        if line.free < q.from_amount:
            raise SimError(400, -5013, "Insufficient balance")
        del self.quotes[quote_id]
        line.free -= q.from_amount
        self._line(self._book(q.wallet), q.to_asset).free += q.to_amount
        order = SimConvertOrder(self.next_id() + 9_000_000_000, q, self.now_ns())
        self.convert_orders[order.order_id] = order
        self.quote_orders[quote_id] = order.order_id
        return order

    # -- margin orders ------------------------------------------------------------------------
    def margin_order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        *,
        quantity: str | None,
        quote_qty: str | None,
        client_id: str,
    ) -> SimMarginOrder:
        """Fill a MARKET order on the cross-margin book (POST /sapi/v1/margin/order; a Portfolio
        Margin account's POST /papi/v1/margin/order) inside the margin wallet.

        SELL spends ``quantity`` of the base asset, BUY spends ``quote_qty`` of the quote asset
        (Binance ``quoteOrderQty``); either way the average price is the seeded index less the
        pair's book costs. No borrowing (``sideEffectType=NO_SIDE_EFFECT``): the free balance must
        cover the order (Binance -2010). A filled order's client id may be reused, as on Binance
        (``newClientOrderId`` is unique among *open* orders only): the caller looks it up first.
        """
        self.settle()
        if self.faults.venue_halted:
            raise SimError(400, -1020, "This operation is not supported.")
        base, quote = self.spot_pair(symbol)
        if order_type != "MARKET":
            raise SimError(400, -1116, "Invalid orderType.")
        match side, quantity, quote_qty:
            case "SELL", str(q), None:
                from_asset, to_asset, spent = base, quote, self._order_amount(base, q, "quantity")
            case "BUY", None, str(q):
                from_asset, to_asset, spent = (
                    quote,
                    base,
                    self._order_amount(quote, q, "quoteOrderQty"),
                )
            case _:
                raise SimError(
                    400,
                    -1102,
                    "A MARKET SELL takes 'quantity' and a MARKET BUY 'quoteOrderQty' here.",
                )
        px_from, _ = self.asset_price_usd(from_asset)
        px_to, _ = self.asset_price_usd(to_asset)
        value_usd = spent * px_from
        if value_usd < 5:
            raise SimError(400, -1013, "Filter failure: NOTIONAL")
        out_usd = self._walk_book(from_asset, to_asset, value_usd)
        if out_usd is None:
            raise SimError(400, -2010, "Order would exceed the book's depth.")
        book = self.wallets[WalletKind.MARGIN]
        line = self._line(book, from_asset)
        if line.free < spent:
            raise SimError(400, -2010, "Account has insufficient balance for requested action.")
        step = Decimal(1).scaleb(-self.asset_decimals[to_asset])
        received = (out_usd / px_to).quantize(step, rounding=ROUND_DOWN)
        line.free -= spent
        self._line(book, to_asset).free += received
        base_qty, quote_amount = (spent, received) if side == "SELL" else (received, spent)
        order = SimMarginOrder(
            order_id=self.next_id() + 7_000_000_000,
            client_id=client_id,
            symbol=symbol,
            side=side,
            base_qty=base_qty,
            quote_qty=quote_amount,
            ts_ns=self.now_ns(),
        )
        self.margin_orders.append(order)
        return order

    def find_margin_order(self, symbol: str, client_id: str) -> SimMarginOrder | None:
        """The latest order of ``symbol`` with ``client_id`` (GET .../margin/order)."""
        for order in reversed(self.margin_orders):
            if order.symbol == symbol and order.client_id == client_id:
                return order
        return None

    def spot_pair(self, symbol: str) -> tuple[str, str]:
        """``(base, quote)`` of a spot/margin symbol (``DOGEUSDT`` → ``DOGE``, ``USDT``)."""
        for quote in ("USDT",):
            base = symbol.removesuffix(quote)
            if base != symbol and base in self.asset_decimals and quote in self.asset_decimals:
                return base, quote
        raise SimError(400, -1121, "Invalid symbol.")

    def _order_amount(self, asset: str, raw: str, name: str) -> Decimal:
        try:
            amount = Decimal(raw)
        except ArithmeticError:
            raise SimError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None
        if not amount.is_finite() or amount <= 0:
            raise SimError(400, -1102, f"Parameter '{name}' was empty or malformed.")
        if (
            amount.quantize(Decimal("0.00001"), rounding=ROUND_DOWN) != amount
            and name == "quantity"
        ):
            raise SimError(400, -1013, "Filter failure: LOT_SIZE")
        return amount

    # -- withdrawals and deposits -------------------------------------------------------------
    def deposit_address(self, asset: str) -> str:
        self._require_asset(asset)
        if self.network is None:
            return "0x" + hashlib.sha256(f"pmr-sim:{self.name}:{asset}".encode()).hexdigest()[:40]
        return self.network.address_of(self.name, asset)

    def withdraw(
        self, asset: str, raw_amount: str, address: str, network: str, client_id: str | None
    ) -> SimWithdrawal:
        self.settle()
        if self.faults.venue_halted or self.faults.withdrawals_halted:
            raise SimError(400, -1020, "This operation is not supported.")
        if client_id is not None:
            for w in self.withdrawals:
                if w.client_id == client_id:
                    return w  # Binance: withdrawOrderId identifies the withdrawal
        amount = self.check_amount(asset, raw_amount)
        fee = _DEFAULT_WITHDRAW_FEES.get(asset, ZERO)
        if amount <= fee:
            raise SimError(400, -4026, "The withdrawal amount must be greater than the fee.")
        line = self._line(self.wallets[WalletKind.SPOT], asset)
        if line.free < amount:
            raise SimError(400, -5002, "You have insufficient balance.")
        line.free -= amount
        now = self.now_ns()
        wid = hashlib.sha256(f"{self.name}:w:{self.next_id()}".encode()).hexdigest()[:32]
        w = SimWithdrawal(
            wid,
            asset,
            amount,
            fee,
            address,
            network,
            now,
            now + round(self.config.withdraw_latency_s * 1e9),
            hashlib.sha256(f"tx:{wid}".encode()).hexdigest(),
            client_id,
        )
        self.withdrawals.append(w)
        return w

    def receive_deposit(self, w: SimWithdrawal, from_venue: str) -> None:
        """Called by the network when a withdrawal from another venue reaches this one."""
        now = self.now_ns()
        self.deposits.append(
            SimDeposit(
                hashlib.sha256(f"{self.name}:d:{w.tx_id}".encode()).hexdigest()[:16],
                w.asset,
                w.amount - w.fee,
                w.address,
                w.network,
                w.tx_id,
                now,
                now,
            )
        )
