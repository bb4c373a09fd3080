"""Desk configuration: one TOML file → validated, frozen, typed objects.

Why one file: a desk's venues, pools, thresholds, collateral rates, routes and pre-authorised
limits are reviewed together by risk; splitting them invites drift. Every error names the
file, the key path (``routes[2].asset``: one style everywhere, see :func:`key_path`) and the
reason, and loading either returns a whole ``DeskConfig`` or raises: nothing downstream ever
sees half a desk.

Two layers of checks:

* at load, everything that holds at any instant: types, ranges (money below
  ``core.domain.MAX_ABS_AMOUNT``), cross-references, and that the declared starting state can be
  priced (every position's instrument and assets, every balance's asset, an option's IV);
* at an instant (:meth:`DeskConfig.check_state_at`, which :meth:`DeskConfig.initial_portfolio`
  runs, so every command that prices the desk inherits it): no held option or future is past
  its expiry. ``pmr config check`` runs it at now, or at ``--as-of``.

Credentials are never inline: a venue names an environment variable or a Prefect Secret block,
and ``DeskConfig.redacted()`` is what gets echoed anywhere.

Examples
--------
>>> desk = load_desk("examples/desk.toml")  # doctest: +SKIP
>>> [p.id for p in desk.pools]  # doctest: +SKIP
['sim-a.pm', 'sim-a.um', 'sim-b.um']
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from core.domain import (
    MAX_ABS_AMOUNT,
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarginModelKind,
    MarkPrice,
    OptionRight,
    Pool,
    Portfolio,
    Position,
    PositionSide,
    Settlement,
    WalletKind,
)
from core.errors import ConfigError, DataError
from core.files import read_text_file
from core.params import (
    DEFAULT_SCENARIO_BY_ASSET,
    BracketTables,
    CollateralRate,
    CrashScenario,
    FrozenModel,
    OffsetCredit,
    ScenarioParams,
    StandardParams,
    Thresholds,
    VenueLevels,
)
from core.venues.capabilities import ConversionMethod, desk_capability_problems

__all__ = [
    "BalanceCfg",
    "CredentialsRef",
    "DeskConfig",
    "DeskSection",
    "InstrumentCfg",
    "PoolCfg",
    "PositionCfg",
    "PreauthCfg",
    "PriceCfg",
    "RouteCfg",
    "SimSettings",
    "SwapCfg",
    "SwapLevel",
    "VenueCfg",
    "WithdrawAddressCfg",
    "key_path",
    "load_desk",
    "parse_desk",
    "validation_problems",
]

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
AssetCode = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,15}$")]
# One size limit for every amount, price and quantity (core.domain.MAX_ABS_AMOUNT, 1e18): what
# the domain objects and the store accept, so a desk that loads can also be booked.
PosDecimal = Annotated[Decimal, Field(gt=0, lt=MAX_ABS_AMOUNT)]
NonNegDecimal = Annotated[Decimal, Field(ge=0, lt=MAX_ABS_AMOUNT)]
SignedDecimal = Annotated[Decimal, Field(gt=-MAX_ABS_AMOUNT, lt=MAX_ABS_AMOUNT)]
_SECRET_KEYS = {"api_key", "apikey", "secret", "password", "private_key", "key", "token"}


class DeskSection(FrozenModel):
    """Desk-wide settings."""

    name: str = Field(min_length=1)
    base_currency: Literal["USD"] = "USD"
    max_price_age_s: float = Field(120.0, gt=0, description="older prices are refused as stale")


class AssetCfg(FrozenModel):
    """An asset the desk may hold. ``decimals`` is the venue's transfer precision."""

    decimals: int = Field(8, ge=0, le=18)
    kind: Literal["coin", "stablecoin", "alt"] = "coin"

    @property
    def step(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)


class CredentialsRef(FrozenModel):
    """Where a live venue's API key lives: env-var names or a Prefect Secret block name."""

    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    secret_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    secret_block: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$")

    @model_validator(mode="after")
    def _one_source(self) -> CredentialsRef:
        env = self.api_key_env is not None and self.secret_env is not None
        if env == (self.secret_block is not None):
            raise ValueError(
                "give either api_key_env + secret_env (environment variable names) or "
                "secret_block (a Prefect Secret block name)"
            )
        return self


class SimSettings(FrozenModel):
    """Settings of a simulated venue (offline default)."""

    seed: int = 0
    price_vol_annual_frac: float = Field(0.6, ge=0, le=5, description="vol of the seeded path")
    transfer_latency_s: float = Field(0.05, ge=0)
    weight_limit_per_min: int = Field(6000, gt=0, description="Binance IP weight budget")
    withdraw_latency_s: float = Field(1200.0, ge=0, description="on-chain withdrawal to credit")


class VenueCfg(FrozenModel):
    """A named exchange connection, simulated (``sim``) or live through ccxt (``ccxt``)."""

    name: Name
    kind: Literal["sim", "ccxt"]
    exchange: Literal["binance"] = "binance"
    credentials: CredentialsRef | None = None
    sandbox: bool = False
    sim: SimSettings = SimSettings()

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in (*data.keys(), *dict(data.get("credentials") or {}).keys()):
                if str(key).lower() in _SECRET_KEYS:
                    raise ValueError(
                        f"'{key}' looks like an inline credential; name an environment variable "
                        "(credentials.api_key_env / secret_env) or a Prefect Secret block "
                        "(credentials.secret_block) instead"
                    )
        return data

    @model_validator(mode="after")
    def _live_needs_credentials(self) -> VenueCfg:
        if self.kind == "ccxt" and self.credentials is None:
            raise ValueError("a ccxt venue needs 'credentials' (env-var or Secret block names)")
        return self


class PoolCfg(FrozenModel):
    """Wallets on one venue that margin the same positions, and how they are margined."""

    id: Name
    venue: Name
    wallets: tuple[WalletKind, ...] = Field(min_length=1)
    model: MarginModelKind
    margin_currency: AssetCode = "USDT"
    thresholds: Thresholds = Thresholds()
    venue_levels: VenueLevels = Field(
        VenueLevels(), description="the venue's own band levels (default: Binance PM Pro)"
    )
    loan_leverage: Literal[3, 5, 10] = Field(
        3, description="Binance PM loan MMR: 3x→10 %, 5x→8 %, 10x→5 %"
    )
    collateral_rates: dict[AssetCode, CollateralRate] = Field(default_factory=dict)

    @field_validator("wallets")
    @classmethod
    def _unique_wallets(cls, v: tuple[WalletKind, ...]) -> tuple[WalletKind, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicated wallet in {[w.value for w in v]}")
        return v

    def to_domain(self) -> Pool:
        return Pool(
            id=self.id,
            venue=self.venue,
            wallets=frozenset(self.wallets),
            model=self.model,
            margin_currency=Asset(self.margin_currency),
        )


class InstrumentCfg(FrozenModel):
    """An instrument the desk trades; mapped to ``core.domain.Instrument``."""

    symbol: str = Field(min_length=1)
    kind: InstrumentKind
    underlying: AssetCode
    quote: AssetCode = "USDT"
    contract_size: PosDecimal = Decimal(1)
    expiry: datetime | None = None
    strike: PosDecimal | None = None
    right: OptionRight | None = None
    settlement: Settlement | None = None

    def to_domain(self) -> Instrument:
        try:
            return Instrument(
                symbol=self.symbol,
                kind=self.kind,
                underlying=Asset(self.underlying),
                quote=Asset(self.quote),
                contract_size=self.contract_size,
                expiry=self.expiry,
                strike=self.strike,
                right=self.right,
                settlement=self.settlement,
            )
        except DataError as exc:
            raise ValueError(exc.message + _ctx(exc)) from None


class BalanceCfg(FrozenModel):
    """An initial wallet balance (seeds simulated venues and offline reports).

    ``amount`` may be negative in a futures, options or PM wallet (a negative wallet balance,
    not a loan: ``WalletKind.may_go_negative``); margin loans go in ``loan``.
    """

    venue: Name
    wallet: WalletKind
    asset: AssetCode
    amount: SignedDecimal
    loan: NonNegDecimal = Decimal(0)
    interest: NonNegDecimal = Decimal(0)

    @model_validator(mode="after")
    def _sign(self) -> BalanceCfg:
        if self.amount < 0 and not self.wallet.may_go_negative:
            raise ValueError(
                f"amount {self.amount} is negative in a {self.wallet.value} wallet, which cannot "
                "go below zero; book what is borrowed as 'loan'"
            )
        return self

    def to_domain(self) -> Balance:
        return Balance(
            self.venue, self.wallet, Asset(self.asset), self.amount, self.loan, self.interest
        )


class PositionCfg(FrozenModel):
    """An initial position (seeds simulated venues and offline reports)."""

    venue: Name
    wallet: WalletKind
    symbol: str
    qty: SignedDecimal
    entry_price: NonNegDecimal
    side: PositionSide = PositionSide.BOTH  # long / short: a hedge-mode leg


class PriceCfg(FrozenModel):
    """An initial mark: an asset's USD price or an instrument's mark (and IV for options).

    ``mark`` may be 0 (a worthless option); margin refuses 0 for assets and futures.
    """

    symbol: str
    mark: NonNegDecimal
    index: PosDecimal | None = None
    iv: PosDecimal | None = None


class RouteCfg(FrozenModel):
    """A way to move one asset between two wallets (DESIGN §5.1 tier 3)."""

    id: Name
    kind: Literal["internal", "sub_account", "onchain"]
    venue: Name
    from_wallet: WalletKind
    to_venue: Name | None = None  # None = same venue
    to_wallet: WalletKind
    asset: AssetCode
    latency_s: float = Field(ge=0)
    fee_usd: NonNegDecimal = Decimal(0)
    fee_bps: NonNegDecimal = Decimal(0)
    min_ticket_usd: NonNegDecimal = Decimal(0)
    per_request_max_usd: PosDecimal | None = None
    rate_per_s: float | None = Field(None, gt=0)
    api_weight: int = Field(1, ge=0)
    cold: bool = Field(
        False,
        description="an on-chain withdrawal from a cold or custodial wallet: sent only within "
        "cold_quota_usd_per_day (onchain routes only)",
    )
    cold_quota_usd_per_day: PosDecimal | None = Field(
        None,
        description="USD a cold route may move in any rolling 24 h (required when cold = true)",
    )
    withdraw_address: Name | None = Field(
        None,
        description="label of the [[withdraw_addresses]] entry an onchain route sends to "
        "(required for onchain routes)",
    )

    @property
    def destination_venue(self) -> str:
        return self.to_venue or self.venue

    @model_validator(mode="after")
    def _shape(self) -> RouteCfg:
        crosses = self.destination_venue != self.venue
        if self.kind == "onchain" and not crosses:
            raise ValueError("an onchain route must go to another venue (set to_venue)")
        if self.kind != "onchain" and crosses:
            raise ValueError(f"a {self.kind} route stays on one venue; use kind='onchain'")
        if not crosses and self.from_wallet == self.to_wallet:
            raise ValueError(f"from_wallet and to_wallet are both {self.from_wallet.value!r}")
        return self


class SwapLevel(FrozenModel):
    """One level of a conversion book: ``width_usd`` more at ``cost_bps`` (convex: rising)."""

    width_usd: PosDecimal
    cost_bps: NonNegDecimal


class SwapCfg(FrozenModel):
    """A conversion of one asset into another inside a wallet.

    ``method`` says how the venue does it: ``convert`` (Binance Convert: spot or funding wallet
    only) or ``margin_order`` (a MARKET order on the cross-margin book, inside the margin
    wallet); the venue's capabilities are checked on load (``core.venues.capabilities``).
    """

    id: Name
    venue: Name
    wallet: WalletKind
    method: ConversionMethod = ConversionMethod.CONVERT
    from_asset: AssetCode
    to_asset: AssetCode
    latency_s: float = Field(ge=0)
    levels: tuple[SwapLevel, ...] = Field(min_length=1)
    fee_usd: NonNegDecimal = Decimal(0)
    rate_per_s: float | None = Field(None, gt=0)
    api_weight: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _convex(self) -> SwapCfg:
        if self.from_asset == self.to_asset:
            raise ValueError("from_asset and to_asset are the same")
        costs = [lvl.cost_bps for lvl in self.levels]
        if costs != sorted(costs):
            raise ValueError(f"levels must have non-decreasing cost_bps (convex cost), got {costs}")
        return self


class PreauthCfg(FrozenModel):
    """A pre-authorised allow-list entry for a route or swap: caps the executor enforces."""

    route: Name
    per_transfer_usd: PosDecimal
    rolling_24h_usd: PosDecimal
    group: Name | None = None

    @model_validator(mode="after")
    def _caps(self) -> PreauthCfg:
        if self.rolling_24h_usd < self.per_transfer_usd:
            raise ValueError(
                f"rolling_24h_usd ({self.rolling_24h_usd}) is below per_transfer_usd "
                f"({self.per_transfer_usd})"
            )
        return self


class WithdrawAddressCfg(FrozenModel):
    """An allow-listed withdrawal address: the only places an onchain route may send to.

    ``venue`` is the *receiving* venue (the deposit address is that venue's), ``network`` the
    chain the withdrawal travels on (the venue's network code, e.g. ``TRX``, ``ETH``), and
    ``label`` the name routes use (``routes[i].withdraw_address``). Mirror here what the venue's
    own withdrawal whitelist holds: the desk refuses to send anywhere else.
    """

    label: Name
    venue: Name
    asset: AssetCode
    network: str = Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
    address: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9:._-]{7,127}$")


class DeskConfig(FrozenModel):
    """A whole desk, cross-checked: every reference points at something declared."""

    desk: DeskSection
    assets: dict[AssetCode, AssetCfg] = Field(min_length=1)
    venues: tuple[VenueCfg, ...] = Field(min_length=1)
    pools: tuple[PoolCfg, ...] = Field(min_length=1)
    collateral_rates: dict[AssetCode, CollateralRate] = Field(default_factory=dict)
    brackets: BracketTables = Field(default_factory=dict)
    scenario: dict[AssetCode, ScenarioParams] = Field(default_factory=dict)
    offsets: tuple[OffsetCredit, ...] = ()
    crash: CrashScenario = CrashScenario()
    standard: StandardParams = StandardParams()
    instruments: tuple[InstrumentCfg, ...] = ()
    balances: tuple[BalanceCfg, ...] = ()
    positions: tuple[PositionCfg, ...] = ()
    prices: tuple[PriceCfg, ...] = ()
    routes: tuple[RouteCfg, ...] = ()
    swaps: tuple[SwapCfg, ...] = ()
    preauth: tuple[PreauthCfg, ...] = ()
    preauth_groups: dict[Name, PosDecimal] = Field(default_factory=dict)
    preauth_venues: dict[Name, PosDecimal] = Field(
        default_factory=dict,
        description="rolling 24 h USD cap on all routes leaving a venue (a venue not listed has "
        "none beyond its routes' own caps)",
    )
    withdraw_addresses: tuple[WithdrawAddressCfg, ...] = ()
    # Where the desk was read from, for error messages (set by ``parse_desk``).
    _source: str = PrivateAttr("<memory>")

    @property
    def source(self) -> str:
        """The file this desk was read from (``<memory>`` when parsed from a mapping)."""
        return self._source

    # -- lookups ---------------------------------------------------------------------------
    def venue(self, name: str) -> VenueCfg:
        for v in self.venues:
            if v.name == name:
                return v
        raise ConfigError("unknown venue", venue=name)

    def pool(self, pool_id: str) -> PoolCfg:
        for p in self.pools:
            if p.id == pool_id:
                return p
        known = ", ".join(p.id for p in self.pools)
        raise ConfigError(f"unknown pool; known: {known}", pool=pool_id)

    def route(self, route_id: str) -> RouteCfg | None:
        """The desk route ``route_id``, or None (a swap id, or a route no longer declared)."""
        for r in self.routes:
            if r.id == route_id:
                return r
        return None

    def swap(self, swap_id: str) -> SwapCfg | None:
        """The desk swap ``swap_id``, or None."""
        for s in self.swaps:
            if s.id == swap_id:
                return s
        return None

    def preauth_for(self, route_id: str) -> PreauthCfg | None:
        """The allow-list entry of route or swap ``route_id``, or None (not pre-authorised)."""
        for pa in self.preauth:
            if pa.route == route_id:
                return pa
        return None

    def withdraw_address(self, label: str) -> WithdrawAddressCfg | None:
        """The allow-listed withdrawal address called ``label``, or None."""
        for a in self.withdraw_addresses:
            if a.label == label:
                return a
        return None

    def pool_of(self, venue: str, wallet: WalletKind) -> PoolCfg | None:
        """The pool a venue wallet belongs to, or None (spot/funding usually belong to none)."""
        for p in self.pools:
            if p.venue == venue and wallet in p.wallets:
                return p
        return None

    def instrument_map(self) -> dict[str, Instrument]:
        return {i.symbol: i.to_domain() for i in self.instruments}

    def collateral_rate(self, pool_id: str, asset: str) -> CollateralRate:
        """The pool's own rate for ``asset`` if set, else the desk-wide one, else 0 (not collateral)."""
        pool = self.pool(pool_id)
        if asset in pool.collateral_rates:
            return pool.collateral_rates[asset]
        if asset in self.collateral_rates:
            return self.collateral_rates[asset]
        return CollateralRate.flat(0)

    def scenario_params(self, asset: str) -> ScenarioParams:
        """Per-underlying scenario parameters: the desk's own, else the venue defaults
        (Deribit: BTC 16 %, ETH 18 %), else the generic defaults."""
        if asset in self.scenario:
            return self.scenario[asset]
        return DEFAULT_SCENARIO_BY_ASSET.get(asset, ScenarioParams())

    def initial_balances(self) -> tuple[Balance, ...]:
        return tuple(b.to_domain() for b in self.balances)

    def initial_positions(self) -> tuple[Position, ...]:
        instruments = self.instrument_map()
        return tuple(
            Position(p.venue, p.wallet, instruments[p.symbol], p.qty, p.entry_price, p.side)
            for p in self.positions
        )

    def initial_prices(self, at: datetime) -> tuple[MarkPrice, ...]:
        return tuple(MarkPrice(p.symbol, p.mark, at, p.index, p.iv) for p in self.prices)

    def initial_portfolio(self, at: datetime) -> Portfolio:
        """The declared starting state (balances, positions, marks stamped ``at``) as one
        ``Portfolio``: what offline reports, plans and the demo price until venues are read.

        Raises
        ------
        ConfigError
            A held option or future is past its expiry at ``at`` (:meth:`check_state_at`).
        """
        self.check_state_at(at)
        return Portfolio.of(
            self.initial_balances(), self.initial_positions(), self.initial_prices(at), at
        )

    def check_state_at(self, at: datetime) -> None:
        """Refuse the declared starting state at the instant ``at``: a held option or future
        past its expiry cannot be margined (the margin engine would refuse it later, after
        other output; here the error names the key path instead of the position).

        Raises
        ------
        ConfigError
            One line per problem, each naming its key path, plus the file.
        """
        if at.tzinfo is None or at.utcoffset() is None:
            raise ConfigError("the as-of instant must carry a timezone", as_of=at.isoformat())
        problems = list(dict.fromkeys(self._expiry_problems(at)))
        if problems:
            raise ConfigError(
                f"desk state {self.source} at {at.isoformat()}:\n  " + "\n  ".join(problems),
                file=self.source,
            )

    def _expiry_problems(self, at: datetime) -> Iterable[str]:
        by_symbol = {i.symbol: i for i in self.instruments}
        for i, pos in enumerate(self.positions):
            inst = by_symbol.get(pos.symbol)
            if inst is not None and inst.expiry is not None and inst.expiry <= at:
                what = "option" if inst.kind is InstrumentKind.OPTION else "future"
                yield (
                    f"positions[{i}].symbol: {what} {pos.symbol!r} expired at "
                    f"{inst.expiry.isoformat()}; close or roll the position"
                )

    def warnings(self) -> tuple[str, ...]:
        """Valid but risky settings, one line each (``pmr config check`` prints them).

        A pool whose ``call`` threshold is below its venue's margin-call level would let the
        venue restrict the account before the desk raises its own margin call.
        """
        out = []
        for i, p in enumerate(self.pools):
            venue_call = p.venue_levels.margin_call
            if p.thresholds.call < venue_call:
                out.append(
                    f"pools[{i}] {p.id}: thresholds.call {p.thresholds.call} is below the "
                    f"venue's margin-call level {venue_call}; the venue restricts the account "
                    "before the desk calls"
                )
        return tuple(out)

    def redacted(self) -> dict[str, Any]:
        """A JSON-able dump safe to echo: credentials are references only, shown as names."""
        return self.model_dump(mode="json")

    # -- cross-references ------------------------------------------------------------------
    @model_validator(mode="after")
    def _references(self) -> DeskConfig:
        problems = list(self._reference_problems())
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def _reference_problems(self) -> Iterable[str]:
        venue_names = [v.name for v in self.venues]
        yield from _dupes("venues", "name", venue_names)
        yield from _dupes("pools", "id", [p.id for p in self.pools])
        yield from _dupes("instruments", "symbol", [i.symbol for i in self.instruments])
        yield from _dupes("routes", "id", [r.id for r in self.routes] + [s.id for s in self.swaps])
        venues, assets = set(venue_names), set(self.assets)
        symbols = {i.symbol for i in self.instruments}

        def need_asset(path: str, code: str) -> Iterable[str]:
            if code not in assets:
                yield f"{path}: unknown asset {code!r} (declare it under [assets.{code}])"

        def need_venue(path: str, name: str) -> Iterable[str]:
            if name not in venues:
                yield f"{path}: unknown venue {name!r}"

        seen_wallets: dict[tuple[str, WalletKind], str] = {}
        for i, p in enumerate(self.pools):
            yield from need_venue(f"pools[{i}].venue", p.venue)
            yield from need_asset(f"pools[{i}].margin_currency", p.margin_currency)
            for a in p.collateral_rates:
                yield from need_asset(f"pools[{i}].collateral_rates", a)
            for w in p.wallets:
                other = seen_wallets.setdefault((p.venue, w), p.id)
                if other != p.id:
                    yield f"pools[{i}].wallets: {p.venue}/{w.value} already belongs to pool {other!r}"
        for a in self.collateral_rates:
            yield from need_asset("collateral_rates", a)
        for a in self.scenario:
            yield from need_asset("scenario", a)
        for j, off in enumerate(self.offsets):
            for u in off.units:
                yield from need_asset(f"offsets[{j}].units", u)
        for i, inst in enumerate(self.instruments):
            yield from need_asset(f"instruments[{i}].underlying", inst.underlying)
            if inst.quote != "USD":  # inverse contracts are quoted in nominal USD
                yield from need_asset(f"instruments[{i}].quote", inst.quote)
            try:
                inst.to_domain()
            except ValueError as exc:
                yield f"instruments[{i}]: {exc}"
        for symbol in self.brackets:
            if symbol not in symbols:
                yield f"brackets.{symbol}: unknown instrument symbol"
        for i, b in enumerate(self.balances):
            yield from need_venue(f"balances[{i}].venue", b.venue)
            yield from need_asset(f"balances[{i}].asset", b.asset)
        yield from _dupes(
            "positions",
            "venue/wallet/symbol/side",
            [f"{p.venue}/{p.wallet.value}/{p.symbol}/{p.side.value}" for p in self.positions],
        )
        for i, pos in enumerate(self.positions):
            yield from need_venue(f"positions[{i}].venue", pos.venue)
            if pos.symbol not in symbols:
                yield f"positions[{i}].symbol: unknown instrument {pos.symbol!r}"
        for i, pr in enumerate(self.prices):
            if pr.symbol not in symbols and pr.symbol not in assets:
                yield f"prices[{i}].symbol: {pr.symbol!r} is neither an asset nor an instrument"
        yield from _dupes("withdraw_addresses", "label", [a.label for a in self.withdraw_addresses])
        yield from _dupes(
            "withdraw_addresses",
            "venue/asset/network/address",
            [f"{a.venue}/{a.asset}/{a.network}/{a.address}" for a in self.withdraw_addresses],
        )
        for i, wa in enumerate(self.withdraw_addresses):
            yield from need_venue(f"withdraw_addresses[{i}].venue", wa.venue)
            yield from need_asset(f"withdraw_addresses[{i}].asset", wa.asset)
        for i, r in enumerate(self.routes):
            yield from need_venue(f"routes[{i}].venue", r.venue)
            yield from need_venue(f"routes[{i}].to_venue", r.destination_venue)
            yield from need_asset(f"routes[{i}].asset", r.asset)
            yield from self._route_custody_problems(i, r)
        for i, s in enumerate(self.swaps):
            yield from need_venue(f"swaps[{i}].venue", s.venue)
            yield from need_asset(f"swaps[{i}].from_asset", s.from_asset)
            yield from need_asset(f"swaps[{i}].to_asset", s.to_asset)
        movable = {r.id for r in self.routes} | {s.id for s in self.swaps}
        for i, pa in enumerate(self.preauth):
            if pa.route not in movable:
                yield f"preauth[{i}].route: unknown route or swap {pa.route!r}"
            if pa.group is not None and pa.group not in self.preauth_groups:
                yield f"preauth[{i}].group: unknown group {pa.group!r} (declare in [preauth_groups])"
        yield from _dupes("preauth", "route", [pa.route for pa in self.preauth])
        for v in self.preauth_venues:
            if v not in venues:
                yield f"preauth_venues.{v}: unknown venue {v!r}"
        yield from self._pricing_problems()

    def _route_custody_problems(self, i: int, r: RouteCfg) -> Iterable[str]:
        """Cold-wallet and withdrawal-address rules of route ``i`` (DESIGN §7)."""
        path = f"routes[{i}]"
        if r.cold and r.kind != "onchain":
            yield (
                f"{path}.cold: only an onchain route can be cold (an on-chain withdrawal from a "
                f"cold or custodial wallet); {r.id!r} is {r.kind}"
            )
        if r.cold and r.cold_quota_usd_per_day is None:
            yield f"{path}.cold_quota_usd_per_day: a cold route needs its pre-approved daily quota"
        if not r.cold and r.cold_quota_usd_per_day is not None:
            yield f"{path}.cold_quota_usd_per_day: set on a route that is not cold (add cold = true)"
        if r.kind != "onchain":
            if r.withdraw_address is not None:
                yield f"{path}.withdraw_address: only an onchain route sends to an address"
            return
        if r.withdraw_address is None:
            yield (
                f"{path}.withdraw_address: an onchain route must name an allow-listed address "
                "(the label of a [[withdraw_addresses]] entry)"
            )
            return
        addr = self.withdraw_address(r.withdraw_address)
        if addr is None:
            yield (
                f"{path}.withdraw_address: unknown address {r.withdraw_address!r} "
                "(declare it under [[withdraw_addresses]])"
            )
            return
        if addr.venue != r.destination_venue or addr.asset != r.asset:
            yield (
                f"{path}.withdraw_address: {addr.label!r} receives {addr.asset} on "
                f"{addr.venue}; the route moves {r.asset} to {r.destination_venue}"
            )

    def _pricing_problems(self) -> Iterable[str]:
        """What the declared starting state needs to be priced: the margin engine, the router
        and the demo refuse a position or balance without a price (``core.margin.book``), so the
        desk is refused here, once, naming the key path. USD (the quote of inverse contracts)
        is worth 1 USD unless the desk prices it."""
        priced = {p.symbol: (k, p) for k, p in enumerate(self.prices)}
        by_symbol = {i.symbol: i for i in self.instruments}

        def need_usd_price(path: str, asset: str, who: str) -> Iterable[str]:
            if asset not in priced and asset != "USD":
                yield f"{path}: {who} needs a USD price for {asset!r} (add it under [[prices]])"

        for i, pos in enumerate(self.positions):
            inst = by_symbol.get(pos.symbol)
            if inst is None:
                continue  # reported as an unknown instrument
            path, who = f"positions[{i}].symbol", f"position in {pos.symbol!r}"
            if inst.kind is not InstrumentKind.SPOT:
                if pos.symbol not in priced:
                    yield f"{path}: no mark for {pos.symbol!r} (add it under [[prices]])"
                elif inst.kind is InstrumentKind.OPTION and priced[pos.symbol][1].iv is None:
                    k = priced[pos.symbol][0]
                    yield f"prices[{k}].iv: option {pos.symbol!r} is held ({path}) and needs its IV"
            yield from need_usd_price(path, inst.underlying, who)
            yield from need_usd_price(path, inst.quote, who)
        for i, b in enumerate(self.balances):
            yield from need_usd_price(f"balances[{i}].asset", b.asset, "balance")
        if self.balances or self.positions:
            for i, pool in enumerate(self.pools):
                path = f"pools[{i}].margin_currency"
                yield from need_usd_price(path, pool.margin_currency, f"pool {pool.id!r}")
        yield from desk_capability_problems(self)


def _dupes(section: str, key: str, values: list[str]) -> Iterable[str]:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            yield f"{section}[{i}].{key}: duplicated {key} {v!r}"
        seen.add(v)


def _ctx(exc: DataError) -> str:
    return (
        ""
        if not exc.context
        else " (" + ", ".join(f"{k}={v}" for k, v in exc.context.items()) + ")"
    )


def key_path(loc: Sequence[int | str]) -> str:
    """Render a location as the key path every pmr error uses: list items in brackets, keys
    after dots (``routes[2].asset``, ``collateral_rates.BTC.tiers[0].rate``).

    >>> key_path(("positions", 0, "qty"))
    'positions[0].qty'
    >>> key_path(())
    '<root>'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "<root>"


def validation_problems(exc: ValidationError) -> list[str]:
    """One ``key.path[i]: reason`` line per pydantic error (whole-model errors: the reason)."""
    lines = []
    for err in exc.errors(include_url=False):
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = tuple(err["loc"])
        lines.append(f"{key_path(loc)}: {msg}" if loc else msg)
    return lines


def parse_desk(data: Mapping[str, Any], *, source: str = "<memory>") -> DeskConfig:
    """Validate an already-parsed TOML mapping; raise one ``ConfigError`` listing every problem."""
    try:
        desk = DeskConfig.model_validate(data)
    except ValidationError as exc:
        lines = validation_problems(exc)
        raise ConfigError(
            f"invalid desk config {source}:\n  " + "\n  ".join(lines), file=source
        ) from None
    desk._source = source
    return desk


def load_desk(path: str | Path) -> DeskConfig:
    """Read and validate a desk TOML file.

    Raises
    ------
    ConfigError
        A missing, unreadable or non-UTF-8 file, malformed TOML (with line and column), or any
        validation problem, each naming the file and the key path.
    """
    p = Path(path)
    text = read_text_file(p, what="desk config")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML: {exc}", file=str(p)) from None
    return parse_desk(data, source=str(p))
