"""Which solver path runs the router's problems (kept apart so importing it is cheap)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Backend"]


class Backend(StrEnum):
    """``highspy``: the hot path (cvxpy's matrices straight into one reused HiGHS object);
    ``cvxpy``: ``problem.solve(solver=cp.HIGHS)``, the model of record."""

    CVXPY = "cvxpy"
    HIGHSPY = "highspy"
