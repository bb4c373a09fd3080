"""Lazy package exports load on first use, cache, and refuse unknown names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.lazy import lazy_getattr


def test_lazy_getattr_imports_on_first_use_and_caches() -> None:
    namespace: dict[str, object] = {}
    get = lazy_getattr("pkg", {"sqrt": "math"}, namespace)
    assert get("sqrt")(9.0) == 3.0  # type: ignore[operator]
    assert "sqrt" in namespace
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'cos'"):
        get("cos")


def test_loading_the_desk_config_does_not_import_the_numeric_engines() -> None:
    code = (
        "import sys, core.config, core.routing, core.margin; "
        "print(sorted(m for m in ('cvxpy', 'scipy', 'ccxt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
