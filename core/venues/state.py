"""The desk's state as its venues report it: a ``Portfolio`` per venue and per pool.

The monitor, reconciliation and stress tests must price what the venues hold now, not the desk
file's starting state. :func:`read_desk_state` reads, from every venue of the desk:

1. every wallet's balances (spot, funding, margin, um, cm; a Portfolio Margin account's
   margin/um/cm through ``papi``; the options wallet where the desk uses it on that venue: a
   pool, balance, position, route or swap names it, since Binance answers ``eapi`` only for
   accounts with options enabled);
2. every position: futures with their hedge-mode side (``positionRisk``) and options
   (``/eapi/v1/position``), mapped onto the desk's instrument definitions by symbol; a symbol the
   desk never declared is refused (``UnknownAssetError``), never skipped;
3. the marks: futures mark and index (``premiumIndex``), option mark, mark IV and the
   underlying's index as the forward (``/eapi/v1/mark`` + ``/eapi/v1/index``);
4. the USD price of every asset the venue's state involves (balances, positions' underlying,
   quote and settlement assets, the venue's pools' margin currencies and swap assets): the
   venue's price index in its quote asset (Binance ``/sapi/v1/margin/priceIndex``, what Binance
   values margin collateral at) times the quote asset's USD price, which no venue publishes and
   the desk declares (``[[prices]] USDT``, a peg the desk asserts; 1 on the example desk);
5. the USDⓈ-M maintenance-margin brackets (``leverageBracket``).

Every price is stamped with the venue's time (``premiumIndex`` ``time``, ``calcTime``, the option
index's ``time``) and refused as stale by the existing check (``MarkPrice.check_fresh``, at the
desk's ``max_price_age_s``) when it is read: a frozen feed is an error naming its symbol, not a
quiet mark.

**Brackets: the venue's override the desk's.** The venue liquidates on its own maintenance
table, so where a venue reports a table for one of the desk's linear contracts, margin uses the
venue's floors, caps, MMRs and cums. Initial margin stays the desk's rule: Binance's
``initialLeverage`` is the *highest* leverage a bracket allows, not the leverage the account
runs at, so a venue bracket keeps the desk's ``max_leverage`` for the same floor (or none: IM =
``im_to_mm_multiple`` × MM). Every difference between a venue's table and the desk's is listed in
:attr:`DeskState.bracket_drift` (the desk file is out of date). COIN-M brackets are not read
(Binance states them in coin at the current index; the adapter does not map them), so inverse
contracts keep the desk's tables.

Each venue's reads make one :class:`VenueState` whose ``portfolio`` is stamped with the venue's
time; :meth:`DeskState.pool_portfolio` is a pool's wallets with its venue's prices, what
``core.margin.api.evaluate_pool`` takes (with ``brackets=state.brackets_for(pool_id)``). On a
freshly seeded simulator with frozen prices this margins to exactly the figures of
``desk.initial_portfolio(at)`` (``tests/venues/test_venue_state.py``).

Examples
--------
>>> state = read_desk_state(desk, dv.venues, clock)  # doctest: +SKIP
>>> evaluate_pool(desk, "sim-b.opt", state.pool_portfolio("sim-b.opt"),
...               brackets=state.brackets_for("sim-b.opt")).ratio  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from core.clock import Clock, ns_to_datetime
from core.config import DeskConfig
from core.domain import (
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarkPrice,
    Pool,
    Portfolio,
    Position,
    WalletKind,
)
from core.errors import ConfigError, DataError
from core.params import Bracket, validate_brackets
from core.venues.base import Venue
from core.venues.capabilities import EXCHANGE_CAPABILITIES
from core.venues.parse import positions_to_domain
from core.venues.reports import PositionReport

__all__ = ["BracketDrift", "DeskState", "VenueState", "read_desk_state", "read_venue_state"]

# Wallets read on every venue. ``pm`` is left out: it is the sum of a Portfolio Margin
# account's margin, um and cm wallets, which are read one by one (reading both double counts);
# ``options`` is read where the desk uses it (``_uses_options``).
STATE_WALLETS: tuple[WalletKind, ...] = (
    WalletKind.SPOT,
    WalletKind.FUNDING,
    WalletKind.MARGIN,
    WalletKind.UM,
    WalletKind.CM,
)
_USD = "USD"  # the quote of inverse contracts: worth 1 USD, never read


@dataclass(frozen=True, slots=True)
class BracketDrift:
    """A difference between a venue's maintenance table and the desk's, one line each."""

    venue: str
    symbol: str
    problem: str

    def __str__(self) -> str:
        return f"{self.venue} {self.symbol}: {self.problem}"


@dataclass(frozen=True, slots=True)
class VenueState:
    """One venue as read: every wallet, position and price (``portfolio``, stamped with the
    venue's time) and the USDⓈ-M brackets margin should use there (``brackets``: the venue's
    tables with the desk's initial-leverage rule, see the module doc)."""

    venue: str
    portfolio: Portfolio
    brackets: Mapping[str, tuple[Bracket, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeskState:
    """The whole desk as its venues report it, read at ``as_of`` (the desk's clock)."""

    as_of: datetime
    venues: Mapping[str, VenueState]
    pools: Mapping[str, Pool]
    bracket_drift: tuple[BracketDrift, ...] = ()

    def venue(self, name: str) -> VenueState:
        try:
            return self.venues[name]
        except KeyError:
            raise ConfigError("venue was not read", venue=name, read=sorted(self.venues)) from None

    def _pool(self, pool_id: str) -> Pool:
        try:
            return self.pools[pool_id]
        except KeyError:
            raise ConfigError("unknown pool", pool=pool_id, known=sorted(self.pools)) from None

    def pool_portfolio(self, pool_id: str) -> Portfolio:
        """The pool's wallets (balances and positions) with its venue's prices and time."""
        pool = self._pool(pool_id)
        pf = self.venue(pool.venue).portfolio
        return Portfolio(
            tuple(b for b in pf.balances if pool.holds(b.venue, b.wallet)),
            tuple(p for p in pf.positions if pool.holds(p.venue, p.wallet)),
            pf.prices,
            pf.as_of,
        )

    def brackets_for(self, pool_id: str) -> Mapping[str, tuple[Bracket, ...]]:
        """The brackets the pool's venue reported (they override the desk's, symbol by symbol)."""
        return self.venue(self._pool(pool_id).venue).brackets

    @property
    def portfolio(self) -> Portfolio:
        """Every venue in one ``Portfolio`` (the desk-wide view routing reads), as of the
        latest venue read (prices are on the venues' clocks).

        A ``Portfolio`` holds one price per symbol; two venues that report different prices
        for one symbol (two exchanges never quite agree, and simulated venues on their own
        seeded paths do not either) cannot be merged without misstating one of them, so that
        raises ``DataError`` naming the symbol: margin each pool on its own venue's prices
        (:meth:`pool_portfolio`). Equal prices read at different instants merge, keeping the
        older stamp.
        """
        balances: list[Balance] = []
        positions: list[Position] = []
        prices: dict[str, MarkPrice] = {}
        read_on: dict[str, str] = {}
        for name, vs in self.venues.items():
            balances.extend(vs.portfolio.balances)
            positions.extend(vs.portfolio.positions)
            for symbol, p in vs.portfolio.prices.items():
                seen = prices.get(symbol)
                if seen is None:
                    prices[symbol], read_on[symbol] = p, name
                elif (seen.mark, seen.index, seen.iv) != (p.mark, p.index, p.iv):
                    raise DataError(
                        "venues report different prices for one symbol; margin each pool on "
                        "its venue's portfolio (DeskState.pool_portfolio)",
                        symbol=symbol,
                        venues=f"{read_on[symbol]}, {name}",
                        marks=f"{seen.mark}, {p.mark}",
                    )
                elif p.at < seen.at:
                    prices[symbol] = p
        as_of = max((vs.portfolio.as_of for vs in self.venues.values()), default=self.as_of)
        return Portfolio(tuple(balances), tuple(positions), prices, as_of)


def _check_pools(desk: DeskConfig, venue: str) -> None:
    for i, pool in enumerate(desk.pools):
        if pool.venue == venue and WalletKind.PM in pool.wallets:
            raise ConfigError(
                f"pools[{i}] ({pool.id}) lists the pm wallet; the venue state reads a Portfolio "
                "Margin account as its margin, um and cm wallets: list those instead",
                file=desk.source,
            )


def _uses_options(desk: DeskConfig, venue: str) -> bool:
    """Whether the desk names the options wallet of ``venue`` anywhere."""
    w = WalletKind.OPTIONS
    return (
        any(p.venue == venue and w in p.wallets for p in desk.pools)
        or any(b.venue == venue and b.wallet is w for b in desk.balances)
        or any(p.venue == venue and p.wallet is w for p in desk.positions)
        or any(s.venue == venue and s.wallet is w for s in desk.swaps)
        or any(r.venue == venue and r.from_wallet is w for r in desk.routes)
        or any(r.destination_venue == venue and r.to_wallet is w for r in desk.routes)
    )


def _positions(
    reports: Iterable[PositionReport], instruments: Mapping[str, Instrument]
) -> tuple[Position, ...]:
    """Venue position reports → domain positions, refusing a symbol held in the wrong wallet."""
    positions = positions_to_domain(tuple(reports), instruments)
    for p in positions:
        option_wallet = p.wallet is WalletKind.OPTIONS
        if option_wallet != p.instrument.is_option:
            raise DataError(
                f"venue reports a {p.instrument.kind} position in its {p.wallet.value} wallet",
                position=p.key,
            )
    return positions


def _needed_assets(
    desk: DeskConfig, venue: str, balances: Iterable[Balance], positions: Iterable[Position]
) -> set[str]:
    """Every asset whose USD price the venue's state needs to be valued and margined."""
    assets = {b.asset.code for b in balances}
    for p in positions:
        inst = p.instrument
        assets |= {inst.underlying.code, inst.quote.code, inst.settle_asset.code}
    assets |= {pool.margin_currency for pool in desk.pools if pool.venue == venue}
    assets |= {a for s in desk.swaps if s.venue == venue for a in (s.from_asset, s.to_asset)}
    return assets - {_USD}


def _asset_prices(
    desk: DeskConfig, name: str, venue: Venue, assets: Iterable[str], max_age_s: float
) -> list[MarkPrice]:
    """USD prices: the venue's index in its quote asset × the desk's USD price of that quote."""
    quote = EXCHANGE_CAPABILITIES[desk.venue(name).exchange].price_quote
    declared = {p.symbol: p for p in desk.prices}
    if quote not in declared:
        raise ConfigError(
            f"the desk must declare the USD price of {quote} under [[prices]]: venues quote "
            f"every price index in {quote}, and none publishes {quote} in USD",
            file=desk.source,
        )
    quote_usd = declared[quote].mark
    now = ns_to_datetime(venue.venue_now_ns())
    out = [MarkPrice(quote, quote_usd, now)]
    for asset in sorted(set(assets) - {quote}):
        idx = venue.price_index(Asset(asset), Asset(quote), max_age_s=max_age_s)
        out.append(MarkPrice(asset, idx.price * quote_usd, idx.at))
    return out


def _instrument_marks(
    desk: DeskConfig,
    venue: Venue,
    positions: Iterable[Position],
    max_age_s: float,
    *,
    options: bool,
) -> list[MarkPrice]:
    """Marks of the desk's futures (premiumIndex) and of its options (mark, IV, index)."""
    declared = {i.symbol: i.kind for i in desk.instruments}
    out: list[MarkPrice] = []
    for wallet in (WalletKind.UM, WalletKind.CM):
        for m in venue.mark_prices(wallet, max_age_s=max_age_s):
            if m.symbol in declared:
                out.append(m)
    listed = {s for s, k in declared.items() if k is InstrumentKind.OPTION}
    if options and listed:
        marks = venue.option_marks(sorted(listed), max_age_s=max_age_s)
        out.extend(m.to_mark_price() for m in marks)
    priced = {m.symbol for m in out}
    for p in positions:
        if p.instrument.kind is not InstrumentKind.SPOT and p.instrument.symbol not in priced:
            raise DataError("the venue holds a position it reports no mark for", position=p.key)
    return out


def _bracket_line(b: Bracket) -> str:
    cap = "∞" if b.cap_usd is None else f"{b.cap_usd.normalize():f}"
    return f"[{b.floor_usd.normalize():f}, {cap}) mmr {b.mmr.normalize():f}"


def _venue_brackets(
    desk: DeskConfig, name: str, reported: Mapping[str, tuple[Bracket, ...]]
) -> tuple[dict[str, tuple[Bracket, ...]], list[BracketDrift]]:
    """The venue's tables for the desk's linear contracts (checked, cum derived) with the desk's
    initial-leverage rule, and every difference from the desk's own tables."""
    linear = {s for s, i in desk.instrument_map().items() if i.is_linear}
    tables: dict[str, tuple[Bracket, ...]] = {}
    drift: list[BracketDrift] = []
    for symbol, raw in sorted(reported.items()):
        if symbol not in linear:
            continue
        try:
            venue_table = validate_brackets(raw)
        except ValueError as exc:
            raise DataError(
                f"venue brackets are unusable: {exc}", venue=name, symbol=symbol
            ) from None
        desk_table = desk.brackets.get(symbol, ())
        leverage = {b.floor_usd: b.max_leverage for b in desk_table}
        tables[symbol] = tuple(
            b.model_copy(update={"max_leverage": leverage.get(b.floor_usd)}) for b in venue_table
        )
        if not desk_table:
            continue
        venue_lines = [_bracket_line(b) for b in venue_table]
        desk_lines = [_bracket_line(b) for b in desk_table]
        if len(venue_lines) != len(desk_lines):
            drift.append(
                BracketDrift(
                    name,
                    symbol,
                    f"the venue has {len(venue_lines)} brackets, the desk {len(desk_lines)}",
                )
            )
        for i, (v, d) in enumerate(zip(venue_lines, desk_lines, strict=False), start=1):
            if v != d:
                drift.append(BracketDrift(name, symbol, f"bracket {i}: venue {v}, desk {d}"))
    return tables, drift


def read_venue_state(
    desk: DeskConfig, name: str, venue: Venue, *, max_age_s: float | None = None
) -> tuple[VenueState, list[BracketDrift]]:
    """Read one venue of ``desk`` (see the module doc); also return its bracket drift.

    Raises
    ------
    StalePriceError
        A price the state needs is older than ``max_age_s`` (default: the desk's
        ``max_price_age_s``) on the venue's clock.
    UnknownAssetError
        The venue holds a position in a symbol the desk does not declare.
    DataError
        A position in the wrong wallet for its instrument, a held instrument without a mark,
        unusable brackets, or prices two reads disagree on.
    ConfigError
        A pool lists the ``pm`` wallet, or the desk does not price the venue's quote asset.
    """
    age_s = desk.desk.max_price_age_s if max_age_s is None else max_age_s
    _check_pools(desk, name)
    instruments = desk.instrument_map()
    options = _uses_options(desk, name)
    wallets = STATE_WALLETS + ((WalletKind.OPTIONS,) if options else ())
    balances = tuple(b for w in wallets for b in venue.balances(w))
    held = (WalletKind.UM, WalletKind.CM) + ((WalletKind.OPTIONS,) if options else ())
    positions = _positions((r for w in held for r in venue.positions(w)), instruments)
    prices = _asset_prices(
        desk, name, venue, _needed_assets(desk, name, balances, positions), age_s
    )
    prices += _instrument_marks(desk, venue, positions, age_s, options=options)
    tables, drift = _venue_brackets(desk, name, venue.leverage_brackets(WalletKind.UM))
    as_of = ns_to_datetime(venue.venue_now_ns())
    portfolio = Portfolio.of(balances, positions, prices, as_of)
    return VenueState(name, portfolio, MappingProxyType(tables)), drift


def read_desk_state(
    desk: DeskConfig,
    venues: Mapping[str, Venue],
    clock: Clock,
    *,
    max_age_s: float | None = None,
) -> DeskState:
    """Read every venue of ``desk`` into a :class:`DeskState` (see the module doc).

    ``venues`` must hold every venue the desk declares (``build_desk_venues(desk, clock)
    .venues``), warmed up. Raises what :func:`read_venue_state` raises, and ``ConfigError`` for
    a missing venue.
    """
    missing = [v.name for v in desk.venues if v.name not in venues]
    if missing:
        raise ConfigError("no venue object for these desk venues", venues=missing)
    states: dict[str, VenueState] = {}
    drift: list[BracketDrift] = []
    for v in desk.venues:
        state, venue_drift = read_venue_state(desk, v.name, venues[v.name], max_age_s=max_age_s)
        states[v.name] = state
        drift.extend(venue_drift)
    pools = {p.id: p.to_domain() for p in desk.pools}
    return DeskState(clock.now(), MappingProxyType(states), MappingProxyType(pools), tuple(drift))
