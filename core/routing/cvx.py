"""Typed doors into cvxpy and highspy for ``mypy --strict``.

cvxpy re-exports its atoms with ``from ... import *`` and declares ``is_dcp`` without the
``dpp`` keyword, and highspy ships no annotations, so strict mypy cannot see them. These
one-line wrappers keep the rest of the router fully typed instead of sprinkling ignores.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import cvxpy
import highspy

__all__ = ["csum", "is_dpp", "multiply", "new_highs", "solve_highs"]

_cvx: Any = cvxpy
_highspy: Any = highspy


def csum(expr: Any, axis: int | None = None) -> cvxpy.Expression:
    """``cp.sum`` with a declared return type."""
    return cast(cvxpy.Expression, _cvx.sum(expr, axis=axis))


def multiply(left: Any, right: Any) -> cvxpy.Expression:
    """``cp.multiply`` (element-wise) with a declared return type."""
    return cast(cvxpy.Expression, _cvx.multiply(left, right))


def is_dpp(obj: Any) -> bool:
    """``obj.is_dcp(dpp=True)``: DCP under the disciplined-parametrised rules."""
    return bool(obj.is_dcp(dpp=True))


def new_highs() -> Any:
    """A fresh ``highspy.Highs`` solver object."""
    return _highspy.Highs()


def solve_highs(problem: cvxpy.Problem, **options: Any) -> None:
    """``problem.solve(solver=cp.HIGHS, **options)``.

    cvxpy's "solution may be inaccurate" warning is silenced: the caller checks
    ``problem.status`` and treats every inaccurate status as a failure (STYLE rule 17).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cast(Any, problem).solve(solver=cvxpy.HIGHS, **options)
