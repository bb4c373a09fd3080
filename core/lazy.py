"""Lazy package exports (PEP 562) and a lighter cvxpy import: start-up time for the CLI.

Why: the CLI imports enums and report types from ``core.margin`` and ``core.routing``; loading
numpy/scipy/cvxpy for that made every ``pmr`` command slow. And a command that does solve
should not pay for parts of cvxpy's import it never uses (``import_cvxpy``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["import_cvxpy", "lazy_getattr"]


def lazy_getattr(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports ``exports[name]`` on first use and caches it.

    >>> ns: dict[str, Any] = {}
    >>> get = lazy_getattr("pkg", {"sqrt": "math"}, ns)
    >>> get("sqrt")(9.0), "sqrt" in ns
    (3.0, True)
    """

    def getattr_(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return getattr_


# -- cvxpy without scipy.stats --------------------------------------------------------------
# cvxpy's package __init__ imports every atom, and one of them (``quantum_rel_entr``) runs
# ``from scipy.stats import entropy`` at import time. scipy.stats is half of cvxpy's import
# cost (~0.5 s of ~1 s here, compiled bytecode), and the router never evaluates that atom, so
# every ``pmr route`` paid for it at start-up.


def _real_scipy_stats(stand_in: ModuleType) -> ModuleType:
    """Drop ``stand_in`` (if it is still registered) and import the real ``scipy.stats``."""
    if sys.modules.get("scipy.stats") is stand_in:
        del sys.modules["scipy.stats"]
    return importlib.import_module("scipy.stats")


class _ScipyStatsStandIn(ModuleType):
    """Stands for ``scipy.stats`` while cvxpy imports: ``entropy`` is a function that imports
    the real module on its first call; any other name imports the real module at once and
    answers from it, so nothing can break, only the saving be lost."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            # the import system probes ``__path__`` and friends: a plain module has none
            raise AttributeError(name)
        if name == "entropy":
            stand_in = self

            def entropy(*args: Any, **kwargs: Any) -> Any:
                return _real_scipy_stats(stand_in).entropy(*args, **kwargs)

            return entropy
        return getattr(_real_scipy_stats(self), name)


def import_cvxpy() -> ModuleType:
    """Import cvxpy without importing ``scipy.stats`` until something really uses it.

    While cvxpy's own import runs, ``sys.modules["scipy.stats"]`` is a stand-in whose
    ``entropy`` defers to the real function on first call; the stand-in is removed as soon as
    cvxpy is imported, so a later ``import scipy.stats`` (the stress tests' distributions, say)
    gets the real module. When cvxpy or scipy.stats is already loaded this is a plain import.
    ``tests/core/test_lazy.py`` holds cvxpy's ``entropy`` equal to scipy's and checks that a
    route loads no ``scipy.stats``.
    """
    if "cvxpy" in sys.modules or "scipy.stats" in sys.modules:
        return importlib.import_module("cvxpy")
    importlib.import_module("scipy")  # the parent package is imported for real
    stand_in = _ScipyStatsStandIn("scipy.stats")
    sys.modules["scipy.stats"] = stand_in
    try:
        return importlib.import_module("cvxpy")
    finally:
        if sys.modules.get("scipy.stats") is stand_in:
            del sys.modules["scipy.stats"]
        scipy = sys.modules["scipy"]
        if scipy.__dict__.get("stats") is stand_in:
            del scipy.__dict__["stats"]
