"""Lazy package exports load on first use, cache, and refuse unknown names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def _run(code: str) -> str:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    return out.stdout.strip()


def test_router_import_and_route_with_cvxpy_loaded_leave_scipy_stats_unloaded() -> None:
    code = (
        "import json, sys\n"
        "from core.routing.jsonio import parse_problem\n"
        "from core.routing.router import Router\n"
        "plan = Router().route(parse_problem(json.load(open('examples/route-problem.json'))))\n"
        "print(plan.status, 'cvxpy' in sys.modules, 'scipy.stats' in sys.modules)\n"
    )
    assert _run(code) == "optimal True False"


def test_cvxpy_entropy_with_deferred_scipy_stats_equals_scipy_and_later_imports_are_real() -> None:
    code = (
        "import sys\n"
        "from core.lazy import import_cvxpy\n"
        "cp = import_cvxpy()\n"
        "atom = sys.modules['cvxpy.atoms.quantum_rel_entr']\n"
        "p = [0.1, 0.2, 0.7]\n"
        "deferred = atom.entropy(p)\n"  # the first call imports the real scipy.stats
        "import scipy.stats\n"
        "print(deferred == scipy.stats.entropy(p), scipy.stats.__file__ is not None,\n"
        "      scipy.stats is sys.modules['scipy.stats'], float(scipy.stats.norm.cdf(0)))\n"
    )
    assert _run(code) == "True True True 0.5"


def test_import_cvxpy_with_scipy_stats_already_loaded_is_a_plain_import() -> None:
    code = (
        "import sys, scipy.stats\n"
        "real = sys.modules['scipy.stats']\n"
        "from core.lazy import import_cvxpy\n"
        "import_cvxpy()\n"
        "print(sys.modules['scipy.stats'] is real,\n"
        "      sys.modules['cvxpy.atoms.quantum_rel_entr'].entropy is real.entropy)\n"
    )
    assert _run(code) == "True True"
