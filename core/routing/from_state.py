"""Candidate sources for deficit pools, built from the desk configuration and current state.

DESIGN §5.1 tiers, from what the desk declares and holds:

* tier 1 ``pnl_offset``: unrealised PnL the pool's margin model does not yet count but the
  venue lets offset, given per pool by the caller (``upnl_offsets_usd``); the margin report
  does not expose such a figure yet, so without it tier 1 is empty (see docs/routing.md);
* tier 2 ``in_place``: a configured swap inside one of the pool's own wallets, converting a
  low-rate asset into a higher-rate one; credit per USD = (1 − cost)·rate(to) − rate(from);
* tier 3 ``transfer``/``swap``/``withdrawal``: a configured route into a pool wallet (direct, or
  two legs through an intermediate wallet, e.g. on-chain to the venue's spot wallet then an
  internal transfer), optionally after a swap in the origin wallet.

Every source carries what the optimiser needs: balance-limited segments (the destination's
collateral rate, marginal across tiered rates, is the credit per USD; fees in bps the cost),
latency, fixed fee, minimum ticket, per-request cap (route cap and pre-authorised per-transfer
cap), request rate, API weights per budget, and shared limits for the origin balance, each
route's remaining rolling-24h pre-authorisation and pre-authorisation groups. Collateral leaving
a pool counts against that pool's headroom above its ``call`` level (E − call·MM). A route or
swap without an allow-list entry is left out (execution would deny it) and noted.

Every source also carries its **legs** (``core.routing.legs``), one per venue operation, so a
plan says how to carry each step out: a swap is a ``convert`` or ``margin_order`` leg (the
swap's ``method``), a route an ``internal``, ``sub_account`` or ``withdrawal`` leg (its
``kind``); a two-route chain or a swap then a route has two legs. Each leg names its desk
route or swap (the allow-list entry it is checked against) and is valued at the state's price
of its asset; the source's USD step is a whole number of the first asset's steps (the desk's
``decimals``), at least one cent, so planned amounts are exact asset amounts.

API weights (``core.routing.budgets``): each leg spends its route's or swap's ``api_weight``
from the budget the rate limiter charges for that request (``<venue>/<family>``: a transfer
the account's UID budget, a Portfolio Margin order ``papi``); the budgets are the venues'
published per-minute limits scaled to the deadline, not the simulator's IP setting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol

from core.config import DeskConfig, PoolCfg, PreauthCfg, RouteCfg, SwapCfg, VenueCfg
from core.domain import Portfolio, WalletKind
from core.errors import DataError
from core.params import CollateralRate
from core.routing.budgets import exchange_weight_limits, leg_budget, weight_budgets
from core.routing.checks import MIN_CREDIT_PER_USD, SMALLEST_USD
from core.routing.legs import LegKind, LegTemplate
from core.routing.sources import (
    CollateralSource,
    Deficit,
    Policy,
    RoutingInput,
    Segment,
    SourceMode,
    Tier,
)
from core.venues.capabilities import is_portfolio_margin_account

__all__ = [
    "AssetValue",
    "PoolMarginView",
    "StateSources",
    "asset_step",
    "marginal_rate_segments",
    "request_cap_usd",
    "route_template",
    "routing_input_from_state",
    "usd_step",
]

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
# Levels crediting less than this per USD, or narrower than the booking resolution, are worth
# nothing (and refused by ``Segment``): a dust balance must not fail the whole desk's plan.
_MIN_CREDIT = Decimal(repr(MIN_CREDIT_PER_USD))
_SMALLEST = Decimal(repr(SMALLEST_USD))
_CENT = Decimal("0.01")


def usd_step(price_usd: Decimal, asset_step: Decimal, *, floor_usd: Decimal = _CENT) -> float:
    """The router's USD step for an asset: a power-of-ten number of asset steps worth at least
    ``floor_usd``, computed exactly, so every multiple of it is a whole number of asset steps.

    A step of one cent is the booking resolution of USD figures; rounding to it alone would
    leave asset amounts that are not multiples of the venue's step (1,000 USD of BTC at 95,000
    is 0.010526315789... BTC).

    Examples
    --------
    >>> usd_step(Decimal("95000"), Decimal("1e-8")), usd_step(Decimal("1"), Decimal("1e-8"))
    (0.095, 0.01)
    """
    step = price_usd * asset_step
    while step < floor_usd:
        step *= 10
    return float(step)


def request_cap_usd(cap_usd: Decimal, step_usd: float) -> float:
    """The most one request may move: ``cap_usd`` rounded down to whole USD steps (0: not
    one step fits).

    Planned amounts are whole USD steps (whole steps of the first leg's asset, ``usd_step``),
    and a step above the cap is cut into requests of whole asset steps
    (``core.routing.legs.request_chunks``). With the cap itself a whole number of steps, n
    requests carry exactly n × cap, so the router's count of requests (capacity q·N(T), ETA)
    is the number the plan sends: 500,000 USD of BTC at 95,000 in 0.095 USD steps is
    499,999.915 USD per request, not one more request for the last 0.085 USD.

    >>> request_cap_usd(Decimal("500000"), 0.095), request_cap_usd(Decimal("1000000"), 0.01)
    (499999.915, 1000000.0)
    """
    step = Decimal(repr(step_usd))
    return float((cap_usd / step).to_integral_value(rounding=ROUND_FLOOR) * step)


class AssetValue(Protocol):
    """What the router needs of one asset row of a margin report."""

    @property
    def asset(self) -> str: ...

    @property
    def value_usd(self) -> Decimal: ...


class PoolMarginView(Protocol):
    """What the router needs of a pool's margin report (``core.margin.report.MarginReport``)."""

    @property
    def pool_id(self) -> str: ...

    @property
    def adjusted_equity_usd(self) -> Decimal: ...

    @property
    def mm_usd(self) -> Decimal: ...

    @property
    def assets(self) -> Sequence[AssetValue]: ...

    def deficit(self, target_ratio: float | Decimal) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class StateSources:
    """The routing input for the pools, and why candidates were left out."""

    input: RoutingInput
    notes: tuple[str, ...]


def asset_step(desk: DeskConfig, asset: str) -> Decimal:
    """The venue's step for ``asset``: the desk's ``decimals`` (8 when not declared)."""
    cfg = desk.assets.get(asset)
    return cfg.step if cfg is not None else Decimal(1).scaleb(-8)


def route_template(desk: DeskConfig, route: RouteCfg, price_usd: Decimal) -> LegTemplate:
    """The leg a desk route makes (``internal``, ``sub_account`` or ``withdrawal``), valued at
    ``price_usd`` per unit of its asset; the router's sources and a pre-funding's moves
    (``core.execution.prefund``) build their legs here, so both are checked by the gate alike.
    """
    return LegTemplate(
        kind=LegKind.of_route(route.kind),
        venue=route.venue,
        from_wallet=route.from_wallet,
        to_wallet=route.to_wallet,
        asset=route.asset,
        price_usd=price_usd,
        asset_step=asset_step(desk, route.asset),
        latency_s=route.latency_s,
        route_id=route.id,
        to_venue=route.to_venue if route.destination_venue != route.venue else None,
    )


def marginal_rate_segments(
    rate: CollateralRate, held_usd: Decimal, width_usd: Decimal
) -> list[tuple[Decimal, Decimal]]:
    """(width, rate) pieces for adding ``width_usd`` to ``held_usd`` of an asset.

    Tiered collateral rates apply marginally like tax brackets (Binance PM collateral ratio;
    DESIGN §3.1), so more of the same asset is credited at non-increasing rates: concave
    credit. A negative holding (a loan) is repaid first at 100 % (negatives count in full).
    """
    out: list[tuple[Decimal, Decimal]] = []
    left = width_usd
    pos = held_usd
    if pos < 0 and left > 0:
        repay = min(-pos, left)
        out.append((repay, Decimal(1)))
        left -= repay
        pos += repay
    if left <= 0:
        return out
    if rate.tiers is None:
        out.append((left, rate.rate if rate.rate is not None else _ZERO))
        return out
    for tier in rate.tiers:
        hi = tier.to_usd
        if hi is not None and pos >= hi:
            continue
        room = left if hi is None else min(left, hi - pos)
        if room > 0:
            out.append((room, tier.rate))
            left -= room
            pos += room
        if left <= 0:
            break
    if left > 0:  # past the last bounded tier: the last tier's rate continues
        out.append((left, rate.tiers[-1].rate))
    return out


def _rate_at(rate: CollateralRate, held_usd: Decimal) -> Decimal:
    """The marginal collateral rate of one more USD at ``held_usd``."""
    segs = marginal_rate_segments(rate, held_usd, Decimal("1e-6"))
    return segs[0][1] if segs else _ZERO


@dataclass(frozen=True, slots=True)
class _DeskIndex:
    """A desk's routes, swaps, pre-authorisations and pools by what the builder looks up.

    ``DeskConfig`` looks them up by scanning its tuples, which is fine for one margin call but
    quadratic when a stress test builds an input for each of thousands of pools (at 1,000
    pools, 12 ms per input, most of it scanning routes for chains). Orders are the desk's, so
    every source comes out in the order the scans gave.
    """

    desk: DeskConfig
    routes_into: Mapping[str, tuple[RouteCfg, ...]]  # by destination venue
    routes_by_id: Mapping[str, RouteCfg]
    swaps_on: Mapping[str, tuple[SwapCfg, ...]]  # by venue
    preauth: Mapping[str, PreauthCfg]  # by route or swap id (the first entry, as scanned)
    pool_of: Mapping[tuple[str, WalletKind], PoolCfg]  # first pool holding (venue, wallet)
    pools: Mapping[str, PoolCfg]
    venues: Mapping[str, VenueCfg]
    portfolio_margin: dict[str, bool]  # per venue, a Portfolio Margin account (filled on use)

    def venue(self, name: str) -> VenueCfg:
        found = self.venues.get(name)
        return found if found is not None else self.desk.venue(name)  # names the unknown one

    def is_portfolio_margin(self, venue: str) -> bool:
        found = self.portfolio_margin.get(venue)
        if found is None:
            found = self.portfolio_margin[venue] = is_portfolio_margin_account(self.desk, venue)
        return found

    @classmethod
    def of(cls, desk: DeskConfig) -> _DeskIndex:
        into: dict[str, list[RouteCfg]] = defaultdict(list)
        by_id: dict[str, RouteCfg] = {}
        for r in desk.routes:
            into[r.destination_venue].append(r)
            by_id.setdefault(r.id, r)
        swaps: dict[str, list[SwapCfg]] = defaultdict(list)
        for s in desk.swaps:
            swaps[s.venue].append(s)
        preauth: dict[str, PreauthCfg] = {}
        for pa in desk.preauth:
            preauth.setdefault(pa.route, pa)
        pool_of: dict[tuple[str, WalletKind], PoolCfg] = {}
        pools: dict[str, PoolCfg] = {}
        for p in desk.pools:
            pools.setdefault(p.id, p)
            for w in p.wallets:
                pool_of.setdefault((p.venue, w), p)
        return cls(
            desk=desk,
            routes_into={k: tuple(v) for k, v in into.items()},
            routes_by_id=by_id,
            swaps_on={k: tuple(v) for k, v in swaps.items()},
            preauth=preauth,
            pool_of=pool_of,
            pools=pools,
            venues={v.name: v for v in reversed(desk.venues)},  # the first of a name wins
            portfolio_margin={},
        )


# The last few desks' indexes, by identity (a ``DeskConfig`` is frozen, so an index built
# for one stays true; the desk is held, so its id is not reused while cached).
_INDEXES: dict[int, _DeskIndex] = {}
_INDEXES_KEPT = 4


def _index_of(desk: DeskConfig) -> _DeskIndex:
    found = _INDEXES.get(id(desk))
    if found is not None and found.desk is desk:
        return found
    index = _DeskIndex.of(desk)
    while len(_INDEXES) >= _INDEXES_KEPT:
        del _INDEXES[next(iter(_INDEXES))]
    _INDEXES[id(desk)] = index
    return index


class _Builder:
    def __init__(
        self,
        desk: DeskConfig,
        state: Portfolio,
        reports: Mapping[str, PoolMarginView],
        used_24h_usd: Mapping[str, Decimal],
    ) -> None:
        self.desk = desk
        self.state = state
        self.reports = reports
        self.used = used_24h_usd
        self.notes: list[str] = []
        self.limits: dict[str, float] = {}
        self.headroom: dict[str, float] = {}
        self.index = _index_of(desk)
        self.preauth = self.index.preauth
        self.budget_venues: set[str] = set()
        self._nets: dict[tuple[str, WalletKind, str], Decimal] | None = None

    # ---------------------------------------------------------------- state look-ups

    def price(self, asset: str) -> Decimal:
        return self.state.price(asset, where="routing sources").mark

    def balance_usd(self, venue: str, wallet: WalletKind, asset: str) -> Decimal:
        if self._nets is None:  # one pass over the state, summed in its order
            nets: dict[tuple[str, WalletKind, str], Decimal] = {}
            for b in self.state.balances:
                key = (b.venue, b.wallet, b.asset.code)
                nets[key] = nets.get(key, _ZERO) + b.net
            self._nets = nets
        net = self._nets.get((venue, wallet, asset), _ZERO)
        return max(_ZERO, net) * self.price(asset) if net > 0 else _ZERO

    def collateral_rate(self, pool: PoolCfg, asset: str) -> CollateralRate:
        """``DeskConfig.collateral_rate`` for a pool already in hand (no scan of the pools)."""
        if asset in pool.collateral_rates:
            return pool.collateral_rates[asset]
        if asset in self.desk.collateral_rates:
            return self.desk.collateral_rates[asset]
        return CollateralRate.flat(0)

    def held_usd(self, pool_id: str, asset: str) -> Decimal:
        report = self.reports.get(pool_id)
        if report is None:
            return _ZERO
        return sum((a.value_usd for a in report.assets if a.asset == asset), _ZERO)

    def asset_step(self, asset: str) -> Decimal:
        return asset_step(self.desk, asset)

    def step_usd(self, asset: str) -> float:
        return usd_step(self.price(asset), self.asset_step(asset))

    # ---------------------------------------------------------------- legs

    def swap_leg(self, s: SwapCfg) -> LegTemplate:
        kind = LegKind.MARGIN_ORDER if s.method.value == "margin_order" else LegKind.CONVERT
        return LegTemplate(
            kind=kind,
            venue=s.venue,
            from_wallet=s.wallet,
            to_wallet=s.wallet,
            asset=s.from_asset,
            price_usd=self.price(s.from_asset),
            asset_step=self.asset_step(s.from_asset),
            latency_s=s.latency_s,
            route_id=s.id,
            to_asset=s.to_asset,
        )

    def route_leg(self, r: RouteCfg) -> LegTemplate:
        return route_template(self.desk, r, self.price(r.asset))

    def weights(
        self, legs: Sequence[LegTemplate], weights: Sequence[int]
    ) -> tuple[tuple[str, float], ...]:
        """Per budget, the API weight one request of the source spends (every leg, once)."""
        out: dict[str, float] = {}
        for leg, weight in zip(legs, weights, strict=True):
            pm = self.index.is_portfolio_margin(leg.venue)
            name = leg_budget(leg.kind, leg.venue, portfolio_margin=pm)
            out[name] = out.get(name, 0.0) + float(weight)
            self.budget_venues.add(leg.venue)
        return tuple(sorted(out.items()))

    def report(self, pool_id: str) -> PoolMarginView:
        rep = self.reports.get(pool_id)
        if rep is None:
            raise DataError("no margin report for pool", pool=pool_id, needed_by="routing")
        return rep

    # ---------------------------------------------------------------- shared limits

    def balance_group(self, venue: str, wallet: WalletKind, asset: str, usd: Decimal) -> str:
        name = f"balance:{venue}/{wallet.value}/{asset}"
        self.limits[name] = float(usd)
        return name

    def preauth_groups(self, leg_id: str) -> tuple[list[str], float] | None:
        """Groups for a leg's remaining rolling-24h cap (and its group); None if not allowed."""
        entry = self.preauth.get(leg_id)
        if entry is None:
            return None
        name = f"preauth:{leg_id}"
        route = self.index.routes_by_id.get(leg_id)
        cap = entry.rolling_24h_usd
        if route is not None and route.cold and route.cold_quota_usd_per_day is not None:
            # A cold route's pre-approved quota is a second rolling-24h cap on the same usage.
            cap = min(cap, route.cold_quota_usd_per_day)
        self.limits[name] = max(0.0, float(cap - self.used.get(leg_id, _ZERO)))
        groups = [name]
        if entry.group is not None and entry.group in self.desk.preauth_groups:
            gname = f"preauth-group:{entry.group}"
            cap = self.desk.preauth_groups[entry.group] - self.used.get(entry.group, _ZERO)
            self.limits[gname] = max(0.0, float(cap))
            groups.append(gname)
        if route is not None and route.venue in self.desk.preauth_venues:
            # The venue's rolling cap over all its routes (swaps are not counted against it,
            # as in ``core.execution.preauth``): shared by every source leaving that venue.
            vname = f"preauth-venue:{route.venue}"
            cap = self.desk.preauth_venues[route.venue] - self.used.get(
                f"venue:{route.venue}", _ZERO
            )
            self.limits[vname] = max(0.0, float(cap))
            groups.append(vname)
        return groups, float(entry.per_transfer_usd)

    def origin(self, venue: str, wallet: WalletKind, asset: str) -> tuple[str | None, float]:
        pool = self.index.pool_of.get((venue, wallet))
        if pool is None:
            return None, 1.0
        rep = self.report(pool.id)
        headroom = rep.adjusted_equity_usd - Decimal(str(pool.thresholds.call)) * rep.mm_usd
        self.headroom[pool.id] = max(0.0, float(headroom))
        debit = _rate_at(self.collateral_rate(pool, asset), self.held_usd(pool.id, asset))
        return pool.id, float(min(Decimal(1), max(_ZERO, debit)))

    # ---------------------------------------------------------------- sources

    def in_place_swaps(self, pool: PoolCfg) -> list[CollateralSource]:
        out: list[CollateralSource] = []
        for s in self.index.swaps_on.get(pool.venue, ()):
            if s.wallet not in pool.wallets:
                continue
            bal = self.balance_usd(s.venue, s.wallet, s.from_asset)
            if bal < _SMALLEST:  # nothing, or dust below the booking resolution
                continue
            pre = self.preauth_groups(s.id)
            if pre is None:
                self.notes.append(f"swap {s.id}: no pre-authorisation entry; left out")
                continue
            groups, per_transfer = pre
            step = self.step_usd(s.from_asset)
            per_request = request_cap_usd(Decimal(repr(per_transfer)), step)
            if per_request <= 0:
                self.notes.append(
                    f"swap {s.id}: its per-transfer cap is below one {s.from_asset} step; left out"
                )
                continue
            r_from = _rate_at(
                self.collateral_rate(pool, s.from_asset),
                self.held_usd(pool.id, s.from_asset),
            )
            r_to = _rate_at(
                self.collateral_rate(pool, s.to_asset), self.held_usd(pool.id, s.to_asset)
            )
            segments = self._swap_segments(s, bal, r_to, r_from)
            if not segments:
                self.notes.append(f"swap {s.id}: converting does not raise adjusted equity")
                continue
            groups.append(self.balance_group(s.venue, s.wallet, s.from_asset, bal))
            legs = (self.swap_leg(s),)
            out.append(
                CollateralSource(
                    id=f"{pool.id}:{s.id}",
                    tier=Tier.IN_PRODUCT,
                    latency_s=s.latency_s,
                    segments=tuple(segments),
                    per_request_usd=per_request,
                    rate_per_s=s.rate_per_s,
                    fixed_fee_usd=float(s.fee_usd),
                    api_weights=self.weights(legs, [s.api_weight]),
                    legs=legs,
                    venue=s.venue,
                    step_usd=step,
                    calls=frozenset({pool.id}),
                    groups=tuple(dict.fromkeys(groups)),  # two legs on one venue share its cap once
                    mode=SourceMode.SWAP,
                )
            )
        return out

    @staticmethod
    def _swap_segments(
        s: SwapCfg,
        bal: Decimal,
        to_rate: Decimal,
        from_rate: Decimal = _ZERO,
        extra_cost_bps: Decimal = _ZERO,
    ) -> list[Segment]:
        segs: list[Segment] = []
        left = bal
        for lvl in s.levels:
            if left <= 0:
                break
            width = min(left, lvl.width_usd)
            # adjusted equity per USD converted: what arrives (after cost) at the target's rate,
            # less what leaves at the source asset's rate (zero when it leaves another wallet)
            credit = (1 - lvl.cost_bps / _BPS) * to_rate - from_rate
            left -= width
            if credit < _MIN_CREDIT:
                break  # cost only rises from here: no later level helps either
            if width < _SMALLEST:
                continue  # below the booking resolution: nothing can be moved
            segs.append(
                Segment(
                    float(width),
                    float(min(Decimal(1), credit)),
                    float((lvl.cost_bps + extra_cost_bps) / _BPS),
                )
            )
        return segs

    def _route_chains(self, pool: PoolCfg) -> list[tuple[RouteCfg, ...]]:
        into = [
            r
            for r in self.index.routes_into.get(pool.venue, ())
            if r.to_wallet in pool.wallets
            and not (r.venue == pool.venue and r.from_wallet in pool.wallets)
        ]
        chains: list[tuple[RouteCfg, ...]] = [(r,) for r in into]
        for last in into:
            if last.kind == "onchain":
                continue
            for first in self.index.routes_into.get(last.venue, ()):
                if (
                    first.to_wallet == last.from_wallet
                    and first.asset == last.asset
                    and first.id != last.id
                    and not (first.venue == pool.venue and first.from_wallet in pool.wallets)
                ):
                    chains.append((first, last))
        return chains

    def transfers(self, pool: PoolCfg) -> list[CollateralSource]:
        out: list[CollateralSource] = []
        for chain in self._route_chains(pool):
            head = chain[0]
            source = self._transfer_source(pool, chain, head.asset, swap=None)
            if source is not None:
                out.append(source)
        # swap in the origin wallet, then a direct route of the swapped asset into the pool
        for chain in self._route_chains(pool):
            if len(chain) != 1:
                continue
            r = chain[0]
            for s in self.index.swaps_on.get(r.venue, ()):
                if s.wallet == r.from_wallet and s.to_asset == r.asset:
                    source = self._transfer_source(pool, chain, s.from_asset, swap=s)
                    if source is not None:
                        out.append(source)
        return out

    def _transfer_source(
        self, pool: PoolCfg, chain: tuple[RouteCfg, ...], asset: str, swap: SwapCfg | None
    ) -> CollateralSource | None:
        head = chain[0]
        leg_ids: list[str] = ([swap.id] if swap is not None else []) + [r.id for r in chain]
        sid = f"{pool.id}:{'+'.join(leg_ids)}"
        bal = self.balance_usd(head.venue, head.from_wallet, asset)
        if bal < _SMALLEST:  # nothing, or dust below the booking resolution
            return None
        groups: list[str] = []
        per_request: list[float] = []
        for leg in leg_ids:
            pre = self.preauth_groups(leg)
            if pre is None:
                self.notes.append(f"{sid}: leg {leg} has no pre-authorisation entry; left out")
                return None
            groups += pre[0]
            per_request.append(pre[1])
        per_request += [float(r.per_request_max_usd) for r in chain if r.per_request_max_usd]
        step = self.step_usd(asset)
        request_cap = None
        if per_request:
            request_cap = request_cap_usd(Decimal(repr(min(per_request))), step)
            if request_cap <= 0:
                self.notes.append(f"{sid}: its per-request cap is below one {asset} step; left out")
                return None
        groups.append(self.balance_group(head.venue, head.from_wallet, asset, bal))
        fee_bps = sum((r.fee_bps for r in chain), _ZERO)
        dest_asset = chain[-1].asset
        rate = self.collateral_rate(pool, dest_asset)
        held = self.held_usd(pool.id, dest_asset)
        if swap is None:
            segments = [
                Segment(float(w), float(c), float(fee_bps / _BPS))
                for w, c in marginal_rate_segments(rate, held, bal)
                if c >= _MIN_CREDIT and w >= _SMALLEST
            ]
        else:
            r_to = _rate_at(rate, held)
            segments = self._swap_segments(swap, bal, r_to, extra_cost_bps=fee_bps)
        if not segments:
            self.notes.append(f"{sid}: {dest_asset} is not collateral in {pool.id}")
            return None
        rates: list[float] = []
        for leg_rate in [r.rate_per_s for r in chain] + [swap.rate_per_s if swap else None]:
            if leg_rate is not None:
                rates.append(leg_rate)
        origin_pool, debit = self.origin(head.venue, head.from_wallet, asset)
        legs = ((self.swap_leg(swap),) if swap is not None else ()) + tuple(
            self.route_leg(r) for r in chain
        )
        weights = ([swap.api_weight] if swap is not None else []) + [r.api_weight for r in chain]
        onchain = any(r.kind == "onchain" for r in chain)
        mode = SourceMode.WITHDRAWAL if onchain else SourceMode.TRANSFER
        if swap is not None:
            mode = SourceMode.SWAP
        return CollateralSource(
            id=sid,
            tier=Tier.TRANSFER,
            latency_s=sum(r.latency_s for r in chain) + (swap.latency_s if swap else 0.0),
            segments=tuple(segments),
            per_request_usd=request_cap,
            rate_per_s=min(rates) if rates else None,
            fixed_fee_usd=float(
                sum((r.fee_usd for r in chain), _ZERO) + (swap.fee_usd if swap else _ZERO)
            ),
            min_ticket_usd=float(max(r.min_ticket_usd for r in chain)),
            api_weights=self.weights(legs, weights),
            legs=legs,
            venue=head.venue,
            origin_pool=origin_pool,
            origin_debit_per_usd=debit,
            step_usd=step,
            calls=frozenset({pool.id}),
            groups=tuple(dict.fromkeys(groups)),  # two legs on one venue share its cap once
            mode=mode,
        )


def routing_input_from_state(
    desk: DeskConfig,
    state: Portfolio,
    reports: Mapping[str, PoolMarginView],
    pool_ids: Sequence[str],
    *,
    deadline_s: float,
    policy: Policy = Policy.STRICT,
    deficit_override_usd: Mapping[str, float] | None = None,
    used_24h_usd: Mapping[str, Decimal] | None = None,
    upnl_offsets_usd: Mapping[str, Decimal] | None = None,
    weight_limits_per_min: Mapping[str, Mapping[str, int]] | None = None,
    call_ids: Mapping[str, str] | None = None,
) -> StateSources:
    """Build the routing input that covers ``pool_ids`` jointly in the current state.

    Parameters
    ----------
    desk, state
        The desk configuration and the balances, positions and prices now.
    reports
        A margin report per pool (every deficit pool and every pool collateral may leave).
    pool_ids
        Pools to cover; each becomes one call whose deficit restores target·(1 + buffer).
    deadline_s
        Seconds the cure may take.
    deficit_override_usd
        Per pool, a deficit to plan for instead of the report's (drills, what-ifs).
    used_24h_usd
        Pre-authorisation already used in the rolling 24 h, per route/swap id, group name and
        source venue (``venue:<name>``): ``core.ledger.preauth_usage.PreauthUsage.for_router``.
        A cold route's daily quota caps it with its rolling cap; a venue in
        ``[preauth_venues]`` caps all its routes together.
    upnl_offsets_usd
        Tier-1 unrealised-PnL offsets per pool (USD of equity creditable at no cost).
    weight_limits_per_min
        Per venue, its API weight limits per minute by limiter family (a connected venue's
        ``capabilities.weight_limits_per_min``); a venue not given uses its exchange's
        published limits (``core.routing.budgets.exchange_weight_limits``).
    call_ids
        Per pool, the margin call id to name its call by (default: the pool id), so each
        plan step names the call it answers.
    """
    if not pool_ids:
        raise DataError("no pool to cover", field="pool")
    b = _Builder(desk, state, reports, used_24h_usd or {})
    calls: list[Deficit] = []
    sources: list[CollateralSource] = []
    overrides = deficit_override_usd or {}
    offsets = upnl_offsets_usd or {}
    for pid in pool_ids:
        pool = b.index.pools.get(pid) or desk.pool(pid)  # desk.pool names an unknown pool
        rep = b.report(pid)
        th = pool.thresholds
        target = th.target * (1 + th.buffer_frac)
        deficit = overrides.get(pid, float(rep.deficit(Decimal(repr(target)))))
        mm = float(rep.mm_usd)
        calls.append(
            Deficit(
                pid,
                deficit,
                deadline_s,
                pool=pid,
                target_ratio=target,
                mm_usd=mm if mm > 0 else None,
            )
        )
        upnl = offsets.get(pid, _ZERO)
        if upnl >= _SMALLEST:
            sources.append(
                CollateralSource(
                    id=f"{pid}:upnl-offset",
                    tier=Tier.PNL_OFFSET,
                    latency_s=0.0,
                    segments=(Segment(float(upnl), 1.0, 0.0),),
                    venue=pool.venue,
                    calls=frozenset({pid}),
                    mode=SourceMode.PNL_OFFSET,
                )
            )
        sources += b.in_place_swaps(pool)
        sources += b.transfers(pool)
    for pid in pool_ids:
        if not any(s.serves(pid) for s in sources):
            # not an input error: the plan says so (infeasible, escalation, reduction)
            b.notes.append(f"pool {pid}: no candidate source holds collateral that can reach it")
    limits = {
        v: (weight_limits_per_min or {}).get(v) or exchange_weight_limits(b.index.venue(v).exchange)
        for v in sorted(b.budget_venues)
    }
    used_budgets = {n for s in sources for n, _ in s.api_weights}
    budgets = {
        k: v for k, v in weight_budgets(limits, deadline_s=deadline_s).items() if k in used_budgets
    }
    if call_ids:
        calls, sources = _named_calls(calls, sources, call_ids)
    used_groups = {g for s in sources for g in s.groups}
    inp = RoutingInput(
        calls=tuple(calls),
        sources=tuple(sources),
        policy=policy,
        shared_limits_usd={k: v for k, v in b.limits.items() if k in used_groups},
        origin_headroom_usd=b.headroom,
        api_weight_budget=budgets,
    )
    return StateSources(inp, tuple(b.notes))


def _named_calls(
    calls: list[Deficit], sources: list[CollateralSource], call_ids: Mapping[str, str]
) -> tuple[list[Deficit], list[CollateralSource]]:
    """Rename each pool's call (and the sources serving it) to its margin call id."""

    def name(pid: str) -> str:
        return call_ids.get(pid, pid)

    named = [replace(c, id=name(c.id)) for c in calls]
    served = [
        s if s.calls is None else replace(s, calls=frozenset(name(c) for c in s.calls))
        for s in sources
    ]
    return named, served
