"""Deterministic prices for the simulated exchange: a seeded path, optionally overridden.

Each non-stable asset follows a driftless geometric Brownian motion on a one-second grid,
``S_k = S_0 · exp(σ√Δt · Σ z_i − ½σ²Δt·k)`` with ``z_i`` from a generator seeded by
``(seed, asset)``, so the price at a given instant is the same in every run and in every
process (loopback server and in-process client agree). An injected scenario multiplies an
asset's path by ``1 + shock_frac``; a frozen asset keeps its last price and timestamp (the
"stale prices" fault).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from decimal import Decimal

import numpy as np

__all__ = ["PricePath"]

_SECONDS_PER_YEAR = 365.0 * 24 * 3600


class PricePath:
    """USD prices of assets over time, reproducible from a seed.

    Parameters
    ----------
    initial_usd
        Price of each asset at ``start_ns``.
    seed
        Seed of the path; the same seed gives the same path.
    vol_annual_frac
        Annualised volatility of non-stable assets (0.6 = 60 %).
    stable_assets
        Assets that stay at their initial price (stablecoins).
    start_ns
        The path's origin.
    """

    def __init__(
        self,
        initial_usd: Mapping[str, Decimal],
        *,
        seed: int,
        vol_annual_frac: float,
        stable_assets: frozenset[str],
        start_ns: int,
    ) -> None:
        self._p0 = {k: float(v) for k, v in initial_usd.items()}
        self._seed = seed
        self._sigma_step = vol_annual_frac * math.sqrt(1.0 / _SECONDS_PER_YEAR)
        self._stable = stable_assets
        self._start_ns = start_ns
        self._cum: dict[str, np.ndarray] = {}
        self._shock: dict[str, float] = {}
        self._frozen: dict[str, tuple[float, int]] = {}

    def assets(self) -> tuple[str, ...]:
        return tuple(self._p0)

    def _steps(self, ts_ns: int) -> int:
        return max(0, (ts_ns - self._start_ns) // 1_000_000_000)

    def _cum_at(self, asset: str, k: int) -> float:
        cum = self._cum.get(asset)
        if cum is None or len(cum) <= k:
            n = max(k + 1, 2 * (0 if cum is None else len(cum)), 4096)
            rng = np.random.default_rng([self._seed, zlib.crc32(asset.encode())])
            z = rng.standard_normal(n)
            z[0] = 0.0
            cum = np.cumsum(z)
            self._cum[asset] = cum
        return float(cum[k])

    def price_usd(self, asset: str, ts_ns: int) -> tuple[Decimal, int]:
        """Return ``(price, as_of_ns)``; ``as_of_ns`` lags ``ts_ns`` only for frozen assets."""
        if asset not in self._p0:
            raise KeyError(asset)
        if asset in self._frozen:
            p, at = self._frozen[asset]
            return Decimal(repr(round(p, 10))), at
        p0 = self._p0[asset]
        if asset in self._stable or self._sigma_step == 0.0:
            p = p0
        else:
            k = self._steps(ts_ns)
            s = self._sigma_step
            p = p0 * math.exp(s * self._cum_at(asset, k) - 0.5 * s * s * k)
        p *= 1.0 + self._shock.get(asset, 0.0)
        return Decimal(repr(round(p, 10))), ts_ns

    def apply_scenario(self, shocks_frac: Mapping[str, float]) -> None:
        """Multiply the path of each named asset by ``1 + shock`` from now on (−0.3 = −30 %)."""
        for asset, shock in shocks_frac.items():
            if asset not in self._p0:
                raise KeyError(asset)
            if shock <= -1.0:
                raise ValueError(f"shock for {asset} must be > -1, got {shock}")
            self._shock[asset] = shock

    def freeze(self, asset: str, ts_ns: int) -> None:
        """Stop updating ``asset``: it keeps its price and timestamp at ``ts_ns`` (stale)."""
        price, _ = self.price_usd(asset, ts_ns)
        self._frozen[asset] = (float(price), ts_ns)

    def unfreeze(self, asset: str) -> None:
        self._frozen.pop(asset, None)
