"""Start-up: `pmr --help` and bad-option errors load no heavy library (no timing asserted).

What a command imports is what it costs to start; these tests pin what must stay out of the
commands that do not compute, in a fresh interpreter so nothing imported by other tests counts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("pydantic", "numpy", "scipy", "cvxpy", "highspy", "polars", "sqlalchemy", "rich")

_PROBE = """
import json, sys
sys.argv = ["pmr", *json.loads(sys.argv[1])]
from flows.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def _loaded(args: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_top_level_help_and_version_load_no_heavy_library(args: list[str]) -> None:
    assert _loaded(args) & set(HEAVY) == set()


@pytest.mark.parametrize(
    "args", [["margin", "--help"], ["route", "--help"], ["demo", "--shock", "ET=-0.3"]]
)
def test_command_help_and_option_errors_load_no_engine(args: list[str]) -> None:
    # typer itself validates every option value with pydantic, so only pydantic may load
    assert _loaded(args) & (set(HEAVY) - {"pydantic", "rich"}) == set()


def test_margin_portfolio_loads_no_solver() -> None:
    loaded = _loaded(["margin", "--portfolio", "examples/portfolio.json"])
    assert "numpy" in loaded  # the margin engine did run
    assert loaded & {"cvxpy", "highspy", "sqlalchemy", "polars"} == set()
