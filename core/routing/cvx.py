"""Typed doors into cvxpy and highspy for ``mypy --strict``, and the router's one cvxpy import.

cvxpy re-exports its atoms with ``from ... import *`` and declares ``is_dcp`` without the
``dpp`` keyword, and highspy ships no annotations, so strict mypy cannot see them. These
one-line wrappers keep the rest of the router fully typed instead of sprinkling ignores.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, cast

import highspy
import numpy as np

if TYPE_CHECKING:
    import cvxpy
else:  # the router's one import of cvxpy, without scipy.stats (core.lazy.import_cvxpy)
    from core.lazy import import_cvxpy

    cvxpy = import_cvxpy()

__all__ = ["cp", "csum", "is_dpp", "multiply", "new_highs", "set_value", "solve_highs"]

#: cvxpy, for the router's modules: ``from core.routing.cvx import cp``.
cp = cvxpy

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


def set_value(param: cvxpy.Parameter, value: Any) -> None:
    """Write ``param``'s value after one vectorised check (shape, finite, sign).

    cvxpy's ``.value`` setter re-validates by projecting onto the Parameter's attributes and
    comparing with ``allclose`` (~100 µs per Parameter, ~3 ms per update at 24 Parameters);
    the same properties are checked here in a few microseconds, then the value is stored
    with cvxpy's own ``save_value``. Only ``nonneg`` Parameters are used by the router.
    """
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != param.shape:
        raise ValueError(f"Parameter {param.name()} expects shape {param.shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Parameter {param.name()} got a NaN or infinite value")
    attributes = getattr(param, "attributes", {})
    if attributes.get("nonneg") and arr.size and float(arr.min()) < 0:
        raise ValueError(f"Parameter {param.name()} is nonneg but got {float(arr.min())}")
    saver = getattr(param, "save_value", None)
    if saver is None:  # a cvxpy without the internal setter: the public, slower one
        param.value = arr
    else:
        saver(arr)
