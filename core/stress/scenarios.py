"""The stress-scenario library (DESIGN §4): typed, named scenarios a desk is tested against.

A ``Scenario`` states **USD moves per asset** (``{"BTC": -0.3, "USDT": -0.05}``), optional
venue-local overrides (a de-peg prints on one venue only: USDe 0.65 on Binance, ~0.99 on-chain),
an implied-vol change, and the venue conditions it comes with (halted transfers, delayed
withdrawals, a cut API weight limit, a stale price feed). Contracts quoted in a stablecoin are
re-priced from their underlying's and their quote's USD moves (``core.stress.shocks``), so a
USDT de-peg alone leaves BTC's USD value where it was.

Kinds, and where their figures come from:

``grid``
    The pool's own margin grid (the scenario model's scan points), one scenario per point.
``joint``
    Hypothetical: BTC moves ``x``, every other crypto asset ``β × x`` (β = OLS beta of daily log
    returns on BTC's, from ``data/calibration.json``), stablecoins stay, IV × (1 + vol).
``historical``
    The worst 1 h / 24 h / 72 h USD moves of seven real crash events (``data/historical_returns.json``,
    derived from real Binance, Kraken and Yahoo candles by ``scripts/stress_data.py``).
``depeg``
    Published collateral de-pegs (``shared/data/stress-events.md`` Part A): USDC 0.8774 (Mar 2023),
    and on Binance in Oct 2025 USDe 0.65, wBETH −88 % vs ETH, BNSOL −79 % vs SOL.
``venue``
    Venue events with no price move: transfers halted on a venue or a wallet pair, withdrawals
    delayed × N, the API weight limit cut, a stale price feed.

Monte Carlo paths are not in the registry (they are drawn, not named): ``core.stress.montecarlo``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from core.errors import DataError

__all__ = [
    "HISTORICAL_WINDOWS",
    "Scenario",
    "ScenarioKind",
    "VenueConditions",
    "beta_to_btc",
    "depeg_scenarios",
    "historical_scenarios",
    "joint_scenario",
    "library",
    "venue_scenarios",
]

HISTORICAL_WINDOWS = ("1h", "24h", "72h")


class ScenarioKind(StrEnum):
    GRID = "grid"
    JOINT = "joint"
    HISTORICAL = "historical"
    DEPEG = "depeg"
    VENUE = "venue"
    MONTE_CARLO = "monte_carlo"


@dataclass(frozen=True, slots=True)
class VenueConditions:
    """What a scenario does to the venues besides prices (time-to-cover reads it).

    ``halted_venues``: no transfer leaves or enters these venues. ``halted_pairs``: (venue,
    from wallet, to wallet) internal transfers refused. ``withdrawal_delay_x``: on-chain legs
    take N × their configured latency. ``weight_limit_frac``: the venue's API weight limit is cut
    to this fraction (fewer legs per minute). ``stale_price_venues``: the price feed stopped;
    the monitor must refuse to act on its prices (``core.margin`` raises on stale prices).
    """

    halted_venues: frozenset[str] = frozenset()
    halted_pairs: frozenset[tuple[str, str, str]] = frozenset()
    withdrawal_delay_x: float = 1.0
    weight_limit_frac: float = 1.0
    stale_price_venues: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.withdrawal_delay_x) and self.withdrawal_delay_x >= 1.0):
            raise DataError("withdrawal_delay_x must be ≥ 1", value=self.withdrawal_delay_x)
        if not (math.isfinite(self.weight_limit_frac) and 0.0 < self.weight_limit_frac <= 1.0):
            raise DataError("weight_limit_frac must be in (0, 1]", value=self.weight_limit_frac)

    @property
    def normal(self) -> bool:
        return self == VenueConditions()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named stress scenario: USD moves per asset, venue overrides, vol, venue conditions.

    ``moves``: USD move per asset code as a fraction (−0.3 = −30 %), in (−1, 10).
    ``venue_moves``: per venue, moves that replace ``moves`` for pools on that venue (venue-local
    de-pegs). ``vol_up_frac``: relative IV change (0.5 = IV × 1.5). ``source``: where the figures
    come from (a file and event, or a citation).
    """

    name: str
    kind: ScenarioKind
    title: str
    moves: Mapping[str, float] = field(default_factory=dict)
    venue_moves: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    vol_up_frac: float = 0.0
    conditions: VenueConditions = VenueConditions()
    source: str = ""

    def __post_init__(self) -> None:
        where = f"scenario {self.name!r}"
        if not self.name:
            raise DataError("a scenario needs a name", where=where)
        for venue, moves in [("", self.moves), *self.venue_moves.items()]:
            for asset, m in moves.items():
                if not (isinstance(m, float | int) and math.isfinite(m) and -1.0 < m < 10.0):
                    raise DataError(
                        "a move must be a finite fraction in (-1, 10)",
                        where=where + (f" venue {venue!r}" if venue else ""),
                        asset=asset,
                        move=m,
                    )
        if not (math.isfinite(self.vol_up_frac) and self.vol_up_frac > -1.0):
            raise DataError("vol_up_frac must be > -1", where=where, value=self.vol_up_frac)

    def moves_on(self, venue: str) -> dict[str, float]:
        """The USD moves a pool on ``venue`` sees (venue-local overrides applied)."""
        return {**self.moves, **self.venue_moves.get(venue, {})}

    def assets(self) -> set[str]:
        out = set(self.moves)
        for m in self.venue_moves.values():
            out |= set(m)
        return out


@cache
def _data(name: str) -> dict[str, Any]:
    text = resources.files("core.stress").joinpath("data", name).read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def beta_to_btc(horizon: str = "1d") -> dict[str, float]:
    """OLS beta of each calibrated asset's ``horizon`` log return on BTC's (``data/calibration.json``)."""
    cal = _data("calibration.json")
    if horizon not in ("1d", "3d"):
        raise DataError("horizon must be '1d' or '3d'", value=horizon)
    return {a: float(b) for a, b in cal[horizon]["beta_to_btc"].items()}


def joint_scenario(
    btc_move: float,
    *,
    vol_up_frac: float = 0.0,
    assets: Iterable[str] = (),
    stablecoins: Iterable[str] = (),
    name: str | None = None,
) -> Scenario:
    """BTC moves ``btc_move``; every other asset in ``assets`` ``β × btc_move``; stables stay.

    An asset without a calibrated beta (not in the daily data) moves like BTC (β = 1), which the
    scenario's ``source`` says; a move that β would push past −100 % is clipped at −99 %.
    """
    betas = beta_to_btc("1d")
    stable = set(stablecoins)
    moves: dict[str, float] = {"BTC": btc_move}
    assumed = []
    for a in assets:
        if a in stable or a == "BTC":
            continue
        beta = betas.get(a)
        if beta is None:
            assumed.append(a)
            beta = 1.0
        moves[a] = max(beta * btc_move, -0.99)
    pct = f"{btc_move:+.0%}"
    source = "β from Binance daily log returns 2020-08-12..2025-12-31 (data/calibration.json)"
    if assumed:
        source += f"; β = 1 assumed for {', '.join(sorted(assumed))}"
    return Scenario(
        name=name or f"joint-btc{pct}-vol{vol_up_frac:+.0%}",
        kind=ScenarioKind.JOINT,
        title=f"BTC {pct}, alts β × BTC, IV {vol_up_frac:+.0%}",
        moves=moves,
        vol_up_frac=vol_up_frac,
        source=source,
    )


#: Implied-vol change that comes with each window of a historical crash (a crash is a vol event;
#: DVOL roughly doubled on 2020-03-12 and rose ~50 % on 2021-05-19 and 2025-10-10).
_HISTORICAL_VOL = {"1h": 0.3, "24h": 0.5, "72h": 0.5}


def historical_scenarios(assets: Iterable[str] | None = None) -> list[Scenario]:
    """One scenario per crash event and window (1 h, 24 h, 72 h) with data.

    ``assets`` limits the moves to those assets (None: every asset with data). An asset the
    event has no figure for (SOL did not trade in March 2020; no hourly data for 2022) is
    left out of that scenario, never invented; the scenario's ``source`` lists what is missing.
    """
    data = _data("historical_returns.json")
    wanted = None if assets is None else set(assets)
    out = []
    for event_id, ev in data["events"].items():
        for window in HISTORICAL_WINDOWS:
            figures: dict[str, Any] = ev["windows"].get(window, {})
            if not figures:
                continue
            moves = {
                a: float(f["return"]) for a, f in figures.items() if wanted is None or a in wanted
            }
            missing = sorted((wanted or set()) - set(figures))
            source = f"data/historical_returns.json: {event_id} worst {window}"
            if missing:
                source += f" (no figure for {', '.join(missing)}: left unmoved)"
            out.append(
                Scenario(
                    name=f"hist-{event_id}-{window}",
                    kind=ScenarioKind.HISTORICAL,
                    title=f"{ev['title']} ({ev['days'][0]}), worst {window}",
                    moves=moves,
                    vol_up_frac=_HISTORICAL_VOL[window],
                    source=source,
                )
            )
    return out


def depeg_scenarios(venues: Iterable[str], assets: Iterable[str]) -> list[Scenario]:
    """Published collateral de-pegs, each set on one venue at a time (they were venue-local).

    Only de-pegs of assets the desk holds are returned. ``wBETH`` and ``BNSOL`` are stated
    against ETH and SOL: their USD move is ``(1 + ETH move) × (1 − 0.88) − 1`` with ETH unmoved.
    """
    held = set(assets)
    published = [
        ("usdc-2023-03", "USDC to 0.8774 (SVB, Mar 2023)", {"USDC": 0.8774 - 1.0},
         "stress-events.md Part A: 2023-03-11 USDC low $0.8774"),
        ("usdt-2022-05", "USDT to 0.9485 (LUNA/UST, May 2022)", {"USDT": 0.9485 - 1.0},
         "USDT-USD_1d.csv (Yahoo aggregate) low 2022-05-12"),
        ("usde-2025-10", "USDe to 0.65 (Binance, Oct 2025)", {"USDE": 0.65 - 1.0},
         "stress-events.md Part A: 2025-10-10/11 USDe 0.65 on Binance"),
        ("wbeth-2025-10", "wBETH −88 % vs ETH (Binance, Oct 2025)", {"WBETH": -0.88},
         "stress-events.md Part A: wBETH low $430 with ETH > $3,800"),
        ("bnsol-2025-10", "BNSOL −79 % vs SOL (Binance, Oct 2025)", {"BNSOL": -0.79},
         "stress-events.md Part A: BNSOL low $34.90 vs SOL 168.79"),
    ]  # fmt: skip
    out = []
    for venue in venues:
        for key, title, moves, source in published:
            if not set(moves) & held:
                continue
            out.append(
                Scenario(
                    name=f"depeg-{key}@{venue}",
                    kind=ScenarioKind.DEPEG,
                    title=f"{title} on {venue}",
                    venue_moves={venue: moves},
                    source=source,
                )
            )
    return out


def venue_scenarios(
    venues: Iterable[str], assets: Iterable[str] = ("BTC",), stablecoins: Iterable[str] = ()
) -> list[Scenario]:
    """Venue events without price moves, per venue, plus a crash during a halt (BTC −20 %,
    alts β × BTC, IV +50 %: a halt is most expensive when it comes with a crash)."""
    assets, stablecoins = list(assets), list(stablecoins)
    out = []
    for v in venues:
        halted = VenueConditions(halted_venues=frozenset({v}))
        crash = joint_scenario(-0.2, assets=assets, stablecoins=stablecoins)
        out += [
            Scenario(f"halt@{v}", ScenarioKind.VENUE, f"transfers halted on {v}",
                     conditions=halted),
            Scenario(f"halt+crash@{v}", ScenarioKind.VENUE,
                     f"transfers halted on {v} during BTC −20 %, alts β × BTC",
                     moves=crash.moves, vol_up_frac=0.5, conditions=halted,
                     source=crash.source),
            Scenario(f"slow-withdrawals@{v}", ScenarioKind.VENUE,
                     f"withdrawals from {v} delayed × 10",
                     conditions=VenueConditions(withdrawal_delay_x=10.0)),
            Scenario(f"weight-cut@{v}", ScenarioKind.VENUE,
                     f"API weight limit on {v} cut to 10 %",
                     conditions=VenueConditions(weight_limit_frac=0.1)),
            Scenario(f"stale-prices@{v}", ScenarioKind.VENUE,
                     f"price feed of {v} stale", conditions=VenueConditions(
                         stale_price_venues=frozenset({v}))),
        ]  # fmt: skip
    return out


def library(
    *, venues: Iterable[str], assets: Iterable[str], stablecoins: Iterable[str] = ()
) -> dict[str, Scenario]:
    """Every named scenario for a desk with these venues and assets, by name (stable order).

    Joint shocks: BTC −10/−20/−30/−50 % with IV +0/+25/+50/+100 % paired, and BTC +20 % (shorts).
    """
    venues, assets = list(venues), list(assets)
    stables = list(stablecoins)
    joint = [
        joint_scenario(m, vol_up_frac=v, assets=assets, stablecoins=stables)
        for m, v in ((-0.1, 0.0), (-0.2, 0.25), (-0.3, 0.5), (-0.5, 1.0), (0.2, 0.25))
    ]
    everything = [
        *joint,
        *historical_scenarios(assets),
        *depeg_scenarios(venues, assets),
        *venue_scenarios(venues, assets, stables),
    ]
    out: dict[str, Scenario] = {}
    for s in everything:
        if s.name in out:
            raise DataError("two scenarios share a name", name=s.name)
        out[s.name] = s
    return out
