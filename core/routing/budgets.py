"""API-weight budgets for the router, in the rate limiter's units (DESIGN §5.2).

The router must not plan more requests than the venue lets through before the deadline. It
counts them the way the limiter does (``core.venues.ratelimit``): Binance *request weight* per
venue and *budget family*, over a one-minute window. A universal transfer
(``POST /sapi/v1/asset/transfer``) weighs 900 against the account's UID budget, which Binance
sets at 180,000 per minute; a Portfolio Margin margin order (``POST /papi/v1/margin/order``)
weighs 1 against the ``papi`` IP budget of 6,000. Counting both as "1 request against 6,000"
(the simulator's IP setting) would let 6 transfers a minute through instead of 200.

* :func:`leg_budget` names the budget a leg spends: ``<venue>/<family>``, the family being
  what the limiter itself decides for the leg's endpoint (``budget_family``);
* :func:`weight_budgets` turns per-minute limits into the weight a plan may spend by its
  deadline: the limit once per started minute of the deadline (the window slides, so the whole
  limit is available again a minute after the first request), ``limit × max(1, ⌈T / 60⌉)``.

The limits are the venue's published ones (``VenueCapabilities.weight_limits_per_min`` of a
connected venue; offline, :func:`exchange_weight_limits` gives the exchange's documented
figures), never the simulator's IP setting: the plan must hold on the real venue. The weights
per request are the desk's ``api_weight`` of each route and swap, in the same units.

Examples
--------
>>> leg_budget(LegKind.INTERNAL, "sim-a", portfolio_margin=True)
'sim-a/sapi-uid'
>>> leg_budget(LegKind.MARGIN_ORDER, "sim-a", portfolio_margin=True)
'sim-a/papi'
>>> weight_budgets({"sim-a": {"sapi-uid": 180_000, "papi": 6_000}}, deadline_s=90)
{'sim-a/papi': 12000.0, 'sim-a/sapi-uid': 360000.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from core.routing.legs import LegKind
from core.venues.capabilities import BINANCE_LEG_ENDPOINTS, BINANCE_WEIGHT_LIMITS_PER_MIN
from core.venues.ratelimit import budget_family

__all__ = [
    "BINANCE_LEG_ENDPOINTS",
    "exchange_weight_limits",
    "leg_budget",
    "weight_budgets",
]


def leg_budget(kind: LegKind, venue: str, *, portfolio_margin: bool) -> str:
    """The budget a leg of ``kind`` on ``venue`` spends: ``<venue>/<limiter family>``."""
    method, path = BINANCE_LEG_ENDPOINTS[(kind.value, portfolio_margin)]
    return f"{venue}/{budget_family(method, path)}"


def exchange_weight_limits(exchange: str) -> Mapping[str, int]:
    """The exchange's published weight limits per minute, by limiter family.

    Binance's figures (``core.venues.capabilities.BINANCE_WEIGHT_LIMITS_PER_MIN``: spot ``api``
    6,000 IP weight, ``sapi`` 12,000 IP, the UID-weighted sapi endpoints 180,000 per account,
    ``fapi``/``dapi`` 2,400, ``papi`` 6,000); the live adapter and the simulator use the same
    table.

    Raises
    ------
    KeyError
        An exchange whose limits pmr does not know.
    """
    if exchange != "binance":
        raise KeyError(exchange)
    return BINANCE_WEIGHT_LIMITS_PER_MIN


def weight_budgets(
    limits_per_min: Mapping[str, Mapping[str, int]], *, deadline_s: float
) -> dict[str, float]:
    """Per budget ``<venue>/<family>``, the weight a plan may spend before ``deadline_s``.

    ``limits_per_min`` maps a venue to its families' per-minute limits. The window slides, so
    a plan may spend the whole limit once per started minute: ``limit × max(1, ⌈T / 60⌉)``.
    """
    minutes = max(1, math.ceil(deadline_s / 60.0))
    return {
        f"{venue}/{family}": float(limit * minutes)
        for venue, families in sorted(limits_per_min.items())
        for family, limit in sorted(families.items())
    }
