"""The valuation formulas the margin models use, from :mod:`core.pricing` (re-exported here).

They live below ``core.margin`` so the simulated exchange prices its options with the same
Black-76 without the venues importing the margin package (``tests/core/test_import_arrows.py``).
"""

from __future__ import annotations

from core.pricing import (
    SECONDS_PER_YEAR,
    black76,
    black76_delta,
    inverse_pnl_coin,
    linear_pnl,
    vol_shock_scale,
    year_fraction,
)

__all__ = [
    "SECONDS_PER_YEAR",
    "black76",
    "black76_delta",
    "inverse_pnl_coin",
    "linear_pnl",
    "vol_shock_scale",
    "year_fraction",
]
