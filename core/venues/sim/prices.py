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
from typing import Any

import numpy as np

__all__ = ["PATH_BLOCK_STEPS", "PricePath"]

_SECONDS_PER_YEAR = 365.0 * 24 * 3600
#: Steps (simulated seconds) of a price path drawn at once; the memory a path keeps.
PATH_BLOCK_STEPS = 4096


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
        # Per asset: (generator state, Σ z before the block) at each block reached, and the
        # one block drawn last (see _cum_at).
        self._checkpoints: dict[str, list[tuple[Mapping[str, Any], float]]] = {}
        self._block: dict[str, tuple[int, np.ndarray]] = {}
        self._shock: dict[str, float] = {}
        self._frozen: dict[str, tuple[float, int]] = {}

    def assets(self) -> tuple[str, ...]:
        return tuple(self._p0)

    def _steps(self, ts_ns: int) -> int:
        return max(0, (ts_ns - self._start_ns) // 1_000_000_000)

    def _cum_at(self, asset: str, k: int) -> float:
        """``Σ z_i`` for ``i ≤ k`` (``z_0 = 0``) of ``asset``'s path, one block at a time.

        Why blocks: the path used to be one cumulative array regrown (doubled) to the latest
        step asked for, 8 bytes per simulated second per asset, without end: a simulator
        served for a month held ~21 MB per asset, and 10,000 monitor cycles 15 s apart 2 MiB
        per asset (``benchmarks/monitor.py``). Now each asset keeps one block of
        :data:`PATH_BLOCK_STEPS` steps and, per block reached, the generator's state at its
        start and the sum before it (~0.7 KB per 68 simulated minutes). A block
        is drawn from its checkpoint, so every value is bit-identical to the one array
        (``tests/venues/test_venue_sim_engine.py`` holds them equal).
        """
        b, i = divmod(k, PATH_BLOCK_STEPS)
        cached = self._block.get(asset)
        if cached is None or cached[0] != b:
            cached = (b, self._draw_block(asset, b))
            self._block[asset] = cached
        return float(cached[1][i])

    def _draw_block(self, asset: str, b: int) -> np.ndarray:
        """Block ``b`` of ``asset``'s cumulative path, drawn from its checkpoint (drawing the
        blocks before it first when ``b`` was never reached)."""
        marks = self._checkpoints.setdefault(asset, [])
        if not marks:
            rng = np.random.default_rng([self._seed, zlib.crc32(asset.encode())])
            marks.append((rng.bit_generator.state, 0.0))
        start = min(b, len(marks) - 1)
        rng = np.random.default_rng([self._seed, zlib.crc32(asset.encode())])
        rng.bit_generator.state = marks[start][0]
        for j in range(start, b + 1):
            z = rng.standard_normal(PATH_BLOCK_STEPS)
            if j == 0:
                z[0] = 0.0
            # Summed from the carried total in order, as np.cumsum over the whole path does.
            cum = np.cumsum(np.concatenate(([marks[j][1]], z)))[1:]
            if j + 1 == len(marks):
                marks.append((rng.bit_generator.state, float(cum[-1])))
        return cum

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
