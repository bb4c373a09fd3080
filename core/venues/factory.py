"""Build venues from the desk config: ``kind = "sim"`` → simulated exchange + CcxtVenue,
``kind = "ccxt"`` → live ccxt Binance with credentials from the environment or a Secret block.

``core`` never imports Prefect: a Secret block is resolved by a ``SecretResolver`` callable the
caller injects (``flows/`` passes one that loads ``prefect.blocks.system.Secret``). The block's
value is JSON ``{"api_key": "...", "secret": "..."}``. Credentials are never logged or echoed.

Simulated venues reach their exchange in one of two ways, with identical results:
``transport="inprocess"`` (the default; ccxt's HTTP goes to an in-process transport, no
sockets) or ``transport="http"`` (a loopback server on 127.0.0.1, every ``urls['api']``
rewritten to it, asserting none still names binance.com).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

import ccxt

from core.clock import Clock
from core.config import DeskConfig, VenueCfg
from core.domain import InstrumentKind, OptionRight, PositionSide, Settlement, WalletKind
from core.errors import ConfigError
from core.redact import register_secret
from core.venues.capabilities import is_portfolio_margin_account
from core.venues.ccxt_plumbing import rewrite_api_urls
from core.venues.ccxt_venue import CcxtVenue
from core.venues.ratelimit import SAPI_UID_FAMILY
from core.venues.reports import WarmUpReport
from core.venues.sim.dialect import BinanceDialect
from core.venues.sim.engine import (
    DEFAULT_WEIGHT_LIMITS_PER_MIN,
    SimConfig,
    SimExchange,
    SimInstrument,
    SimNetwork,
)
from core.venues.sim.faults import SkewedClock
from core.venues.sim.options import SimOption, binance_option_id_problem
from core.venues.sim.server import SimHttpServer
from core.venues.sim.transport import sim_session

__all__ = [
    "DeskVenues",
    "SecretResolver",
    "build_desk_venues",
    "live_venue",
    "remote_sim_venue",
    "sim_exchange_from_desk",
    "sim_venue",
]

SecretResolver = Callable[[str], str]
#: A running ``pmr sim serve`` (``http://127.0.0.1:PORT``) that serves the desk's simulated
#: venues to every process, instead of an in-process simulator per process.
SIM_URL_ENV = "PMR_SIM_URL"
#: The HMAC secret that server signs with (``pmr sim serve --api-secret``).
SIM_SECRET_ENV = "PMR_SIM_SECRET"
DEFAULT_SIM_SECRET = "pmr-sim-secret"
Transport = Literal["inprocess", "http"]
# Binance ``positionSide`` of each domain leg (one-way BOTH, hedge-mode LONG / SHORT).
_BINANCE_SIDE: dict[PositionSide, Literal["BOTH", "LONG", "SHORT"]] = {
    PositionSide.BOTH: "BOTH",
    PositionSide.LONG: "LONG",
    PositionSide.SHORT: "SHORT",
}


def _sim_limits(cfg: VenueCfg) -> dict[str, int]:
    # One configured budget per family window (SimSettings.weight_limit_per_min), never above
    # Binance's own per-family limit.
    # The UID budget is per account, not per IP, and is not capped by the IP setting.
    return {
        fam: limit if fam == SAPI_UID_FAMILY else min(limit, cfg.sim.weight_limit_per_min)
        for fam, limit in DEFAULT_WEIGHT_LIMITS_PER_MIN.items()
    }


def _sim_options(desk: DeskConfig) -> tuple[list[SimOption], dict[str, str]]:
    """The desk's options a simulated Binance lists, and why each other one is not.

    Binance European options are USDT-quoted and USDT-settled, with ids ``BASE-YYMMDD-STRIKE-
    C|P``; the simulator marks one only when the desk gives its mark and IV (its seed).
    """
    prices = {p.symbol: p for p in desk.prices}
    listed: list[SimOption] = []
    why_not: dict[str, str] = {}
    for inst in desk.instruments:
        if inst.kind is not InstrumentKind.OPTION or inst.expiry is None or inst.strike is None:
            continue  # (InstrumentCfg refuses an option without expiry or strike)
        is_call = inst.right is OptionRight.CALL
        price = prices.get(inst.symbol)
        if inst.settlement is not Settlement.LINEAR or inst.quote != "USDT":
            why_not[inst.symbol] = "Binance options are quoted and settled in USDT"
            continue
        problem = binance_option_id_problem(
            inst.symbol,
            underlying=inst.underlying,
            expiry=inst.expiry,
            strike=inst.strike,
            is_call=is_call,
        )
        if problem is not None:
            why_not[inst.symbol] = problem
            continue
        if price is None or price.iv is None:
            why_not[inst.symbol] = "the desk gives no mark and IV to seed it"
            continue
        if not {inst.underlying, inst.quote} <= prices.keys():
            why_not[inst.symbol] = "the desk does not price its underlying and quote in USD"
            continue
        listed.append(
            SimOption(
                symbol=inst.symbol,
                underlying=inst.underlying,
                quote=inst.quote,
                strike=inst.strike,
                expiry_ns=round(inst.expiry.timestamp() * 1e3) * 1_000_000,
                is_call=is_call,
                iv=price.iv,
                unit=inst.contract_size,
                seed_mark=price.mark,
            )
        )
    return listed, why_not


def sim_exchange_from_desk(
    desk: DeskConfig,
    venue: str,
    clock: Clock,
    *,
    network: SimNetwork | None = None,
    api_secret: str | None = None,
    frozen_prices: bool = False,
) -> tuple[SimExchange, list[str]]:
    """Build the simulated exchange of ``venue`` with the desk's initial state.

    ``frozen_prices=True`` keeps every asset at the desk's declared price (the seeded path with
    zero volatility) whatever the clock says: what a wall-clock server (``pmr sim serve
    --prices frozen``) needs for an HTTP client to see the same figures in every run.

    Options are listed as Binance European options and marked by Black-76 from the desk's
    marks (:mod:`core.venues.sim.options`). Returns the engine and the list of config items the
    simulator does not hold (an option Binance could not list, a position in an instrument it
    does not simulate), each with the reason, so callers can say so.
    """
    cfg = desk.venue(venue)
    if cfg.kind != "sim":
        raise ConfigError("venue is not simulated", venue=venue, kind=cfg.kind)
    prices = {p.symbol: p for p in desk.prices}
    instruments = []
    for inst in desk.instruments:
        match inst.kind:
            case InstrumentKind.LINEAR_PERP | InstrumentKind.LINEAR_FUTURE:
                kind: Literal["linear", "inverse"] = "linear"
            case InstrumentKind.INVERSE_PERP | InstrumentKind.INVERSE_FUTURE:
                kind = "inverse"
            case _:
                continue
        basis = Decimal(0)
        p = prices.get(inst.symbol)
        if p is not None and p.index is not None:
            basis = p.mark / p.index - 1
        instruments.append(
            SimInstrument(inst.symbol, kind, inst.underlying, inst.quote, inst.contract_size, basis)
        )
    brackets = {
        sym: tuple((b.floor_usd, b.cap_usd, b.mmr, b.max_leverage or 20) for b in table)
        for sym, table in desk.brackets.items()
    }
    levels = {
        (s.from_asset, s.to_asset): tuple((lv.width_usd, lv.cost_bps) for lv in s.levels)
        for s in desk.swaps
        if s.venue == venue
    }
    options, not_listed = _sim_options(desk)
    pm = is_portfolio_margin_account(desk, venue)
    config = SimConfig(
        seed=cfg.sim.seed,
        price_vol_annual_frac=0.0 if frozen_prices else cfg.sim.price_vol_annual_frac,
        transfer_latency_s=cfg.sim.transfer_latency_s,
        withdraw_latency_s=cfg.sim.withdraw_latency_s,
        weight_limits_per_min=_sim_limits(cfg),
        portfolio_margin=pm,
        frozen_prices=frozen_prices,
        api_key=f"pmr-sim-{venue}",
        api_secret=api_secret or secrets.token_hex(16),
    )
    engine = SimExchange(
        venue,
        clock,
        asset_decimals={a: c.decimals for a, c in desk.assets.items()},
        prices_usd={a: prices[a].mark for a in desk.assets if a in prices},
        instruments=instruments,
        options=options,
        config=config,
        stable_assets=frozenset(a for a, c in desk.assets.items() if c.kind == "stablecoin"),
        brackets=brackets,
        convert_levels=levels,
        network=network,
    )
    skipped: list[str] = []
    for b in desk.balances:
        if b.venue == venue:
            engine.fund(b.wallet, b.asset, b.amount, loan=b.loan, interest=b.interest)
    for pos in desk.positions:
        if pos.venue != venue:
            continue
        where = f"position {venue}/{pos.wallet.value}/{pos.symbol}"
        if pos.symbol in engine.instruments:
            engine.open_position(pos.symbol, pos.qty, pos.entry_price, _BINANCE_SIDE[pos.side])
        elif pos.symbol in engine.option_book.options and pos.wallet is WalletKind.OPTIONS:
            engine.open_option_position(pos.symbol, pos.qty, pos.entry_price)
        elif pos.symbol in engine.option_book.options:
            skipped.append(f"{where} (not simulated: Binance holds options in the options wallet)")
        elif pos.symbol in not_listed:
            skipped.append(f"{where} (not simulated: {not_listed[pos.symbol]})")
        else:
            skipped.append(f"{where} (not simulated)")
    return engine, skipped


def _binance(api_key: str, secret: str) -> object:
    # Every credential an exchange is built with is masked in logs and error texts from now on.
    register_secret(api_key)
    register_secret(secret)
    return ccxt.binance({"apiKey": api_key, "secret": secret, "enableRateLimit": False})


def _sim_ccxt_venue(
    engine: SimExchange,
    dialect: BinanceDialect,
    clock: Clock,
    transport: Transport,
    server: SimHttpServer | None,
    asset_decimals: Mapping[str, int],
) -> CcxtVenue:
    ex = _binance(engine.config.api_key, engine.config.api_secret)
    if transport == "inprocess":
        host = f"{engine.name}.sim.invalid"  # RFC 2606: can never resolve, even by mistake
        rewrite_api_urls(ex, f"http://{host}")
        session, _ = sim_session({host: dialect})
        ex.session = session  # type: ignore[attr-defined]
    elif server is not None:
        rewrite_api_urls(ex, server.base_url(engine.name))
    else:
        raise ConfigError("transport='http' needs a running SimHttpServer", venue=engine.name)
    return CcxtVenue(
        engine.name,
        ex,
        SkewedClock(clock, engine.faults),  # the desk's host clock, skewable as a fault
        asset_decimals=asset_decimals,
        weight_limits_per_min=engine.config.weight_limits_per_min,
        portfolio_margin=engine.config.portfolio_margin,
    )


def remote_sim_venue(
    desk: DeskConfig, venue: str, clock: Clock, base_url: str, api_secret: str
) -> CcxtVenue:
    """A ``CcxtVenue`` over simulated ``venue`` as served by ``pmr sim serve`` at ``base_url``.

    Every process of a deployment (the monitor, ``serve``, each flow run's fresh interpreter)
    then sees one simulated exchange, as they would see one real venue; in-process simulators
    would each start from the desk file. The server signs with ``api_secret`` (``pmr sim serve
    --api-secret``, here ``PMR_SIM_SECRET``) and keeps wall-clock time, so ``clock`` should be
    the wall clock (a manual clock that follows it works too).

    Raises
    ------
    ConfigError
        ``base_url`` is not a loopback ``http://`` address (the simulator never leaves the
        host), or ``venue`` is not a simulated venue of ``desk``.
    """
    cfg = desk.venue(venue)
    if cfg.kind != "sim":
        raise ConfigError("venue is not simulated", venue=venue, kind=cfg.kind)
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"{SIM_URL_ENV} must be a loopback http:// address of `pmr sim serve`",
            value=base_url,
        )
    register_secret(api_secret)
    ex = _binance(f"pmr-sim-{venue}", api_secret)
    rewrite_api_urls(ex, f"{base_url.rstrip('/')}/{venue}")
    return CcxtVenue(
        venue,
        ex,
        clock,
        asset_decimals={a: c.decimals for a, c in desk.assets.items()},
        weight_limits_per_min=_sim_limits(cfg),
        portfolio_margin=is_portfolio_margin_account(desk, venue),
    )


def sim_venue(
    engine: SimExchange,
    clock: Clock,
    *,
    transport: Transport = "inprocess",
    server: SimHttpServer | None = None,
) -> tuple[CcxtVenue, BinanceDialect]:
    """A ``CcxtVenue`` over one simulated exchange, in-process or through ``server``."""
    dialect = BinanceDialect(engine)
    venue = _sim_ccxt_venue(engine, dialect, clock, transport, server, engine.asset_decimals)
    return venue, dialect


def _credentials(
    cfg: VenueCfg, resolver: SecretResolver | None, env: Mapping[str, str]
) -> tuple[str, str]:
    creds = cfg.credentials
    if creds is None:
        raise ConfigError("a ccxt venue needs credentials", venue=cfg.name)
    if creds.secret_block is not None:
        if resolver is None:
            raise ConfigError(
                "credentials name a Prefect Secret block but no resolver was given",
                venue=cfg.name,
                secret_block=creds.secret_block,
            )
        raw = resolver(creds.secret_block)
        try:
            data = json.loads(raw)
            return str(data["api_key"]), str(data["secret"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                'Secret block value must be JSON {"api_key": ..., "secret": ...}',
                venue=cfg.name,
                secret_block=creds.secret_block,
            ) from None
    key_env, secret_env = creds.api_key_env, creds.secret_env
    if key_env is None or secret_env is None:  # CredentialsRef guarantees both; be explicit
        raise ConfigError("credentials need api_key_env and secret_env", venue=cfg.name)
    missing = [n for n in (key_env, secret_env) if not env.get(n)]
    if missing:
        raise ConfigError(
            "credential environment variables are not set", venue=cfg.name, missing=missing
        )
    return env[key_env], env[secret_env]


def live_venue(
    cfg: VenueCfg,
    clock: Clock,
    asset_decimals: Mapping[str, int],
    *,
    resolver: SecretResolver | None = None,
    env: Mapping[str, str] | None = None,
    portfolio_margin: bool = False,
) -> CcxtVenue:
    """A ``CcxtVenue`` on the real exchange. Makes no request until first used."""
    if cfg.kind != "ccxt":
        raise ConfigError("venue is not a ccxt venue", venue=cfg.name, kind=cfg.kind)
    api_key, secret = _credentials(cfg, resolver, os.environ if env is None else env)
    ex = _binance(api_key, secret)
    if cfg.sandbox:
        ex.set_sandbox_mode(True)  # type: ignore[attr-defined]
    return CcxtVenue(
        cfg.name,
        ex,
        clock,
        asset_decimals=asset_decimals,
        weight_limits_per_min=DEFAULT_WEIGHT_LIMITS_PER_MIN,
        portfolio_margin=portfolio_margin,
    )


@dataclass
class DeskVenues:
    """Every venue of a desk, plus the simulator parts behind the simulated ones."""

    venues: dict[str, CcxtVenue]
    engines: dict[str, SimExchange] = field(default_factory=dict)
    dialects: dict[str, BinanceDialect] = field(default_factory=dict)
    network: SimNetwork | None = None
    server: SimHttpServer | None = None
    skipped: list[str] = field(default_factory=list)

    def warm_up(self) -> dict[str, WarmUpReport]:
        """Warm every venue up (clock offset, markets, precision check): call once at start.

        Raises ``ConfigError`` naming an asset whose desk precision is finer than its venue's.
        """
        return {name: venue.warm_up() for name, venue in self.venues.items()}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> DeskVenues:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_desk_venues(
    desk: DeskConfig,
    clock: Clock,
    *,
    transport: Transport = "inprocess",
    resolver: SecretResolver | None = None,
    env: Mapping[str, str] | None = None,
    port: int = 0,
) -> DeskVenues:
    """Build every venue of ``desk``; simulated ones share one network (withdraw/deposit).

    With ``transport="http"`` a loopback server on ``127.0.0.1:port`` serves all simulated
    venues; call ``close()`` (or use ``with``) to stop it. With ``PMR_SIM_URL`` set (in ``env``,
    default ``os.environ``) the simulated venues are those of that running ``pmr sim serve``
    (:func:`remote_sim_venue`): no simulator is built here, so ``engines`` stays empty.
    """
    decimals = {a: c.decimals for a, c in desk.assets.items()}
    out = DeskVenues(venues={})
    sims = [v for v in desk.venues if v.kind == "sim"]
    environ = os.environ if env is None else env
    remote = environ.get(SIM_URL_ENV, "").strip()
    if sims and remote:
        secret = environ.get(SIM_SECRET_ENV, "").strip() or DEFAULT_SIM_SECRET
        for v in sims:
            out.venues[v.name] = remote_sim_venue(desk, v.name, clock, remote, secret)
        sims = []
    if sims:
        out.network = SimNetwork()
        for v in sims:
            engine, skipped = sim_exchange_from_desk(desk, v.name, clock, network=out.network)
            out.engines[v.name] = engine
            out.dialects[v.name] = BinanceDialect(engine)
            out.skipped.extend(skipped)
        if transport == "http":
            out.server = SimHttpServer(out.dialects, port=port).start()
    try:
        for v in desk.venues:
            if v.name in out.venues:
                continue  # served by a running `pmr sim serve` (PMR_SIM_URL)
            if v.kind == "sim":
                out.venues[v.name] = _sim_ccxt_venue(
                    out.engines[v.name],
                    out.dialects[v.name],
                    clock,
                    transport,
                    out.server,
                    decimals,
                )
            else:
                pm = is_portfolio_margin_account(desk, v.name)
                out.venues[v.name] = live_venue(
                    v, clock, decimals, resolver=resolver, env=env, portfolio_margin=pm
                )
    except BaseException:
        out.close()  # never leave a server running behind a failed build
        raise
    return out
