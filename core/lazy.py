"""Lazy package exports (PEP 562), shared by packages whose submodules are heavy to import.

Why: the CLI imports enums and report types from ``core.margin`` and ``core.routing``; loading
numpy/scipy/cvxpy for that made every ``pmr`` command slow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


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
