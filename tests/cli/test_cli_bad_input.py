"""Bad input to `pmr route` and `pmr sim serve` that used to end in a traceback: exit 2, one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
DESK = str(ROOT / "examples" / "desk.toml")
runner = CliRunner()


def _refused(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("deficit", "message"),
    [
        ("1e20", "number is implausibly large (>= 1e18) (field=--deficit"),
        ("1e18", "number is implausibly large (>= 1e18) (field=--deficit"),
        ("inf", "number is NaN or infinite (field=--deficit"),
        ("0", "--deficit must be > 0 USD"),
    ],
)
def test_route_desk_with_deficit_beyond_the_money_limit_exits_2(deficit: str, message: str) -> None:
    _refused(["route", "--desk", DESK, "--pool", "sim-b.um", "--deficit", deficit], message)


def test_route_problem_naming_a_directory_exits_2(tmp_path: Path) -> None:
    _refused(["route", "--problem", str(tmp_path)], "routing problem path is a directory")


def test_route_problem_with_non_utf8_bytes_exits_2_naming_the_byte(tmp_path: Path) -> None:
    bad = tmp_path / "problem.json"
    bad.write_bytes(b'{"policy": "str\xefct"}')
    _refused(["route", "--problem", str(bad)], "routing problem is not UTF-8 text (byte 15)")


def test_route_problem_with_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "problem.json"
    bad.write_text('{"policy": }')
    _refused(["route", "--problem", str(bad)], "routing problem is not valid JSON")


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_sim_serve_with_port_out_of_range_exits_2_before_listening(port: str) -> None:
    _refused(["sim", "serve", "--port", port], "--port must be in 0..65535")


PROBLEM = str(ROOT / "examples" / "route-problem.json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--problem", PROBLEM, "--deadline", "10"],
            "--deadline goes with --desk; a problem file carries its own deadline_s",
        ),
        (["--problem", PROBLEM, "--emit-problem", "--table"], "--table means nothing"),
        (["--problem", PROBLEM, "--emit-problem", "--backend", "cvxpy"], "--backend means"),
        (["--desk", DESK, "--pool", "sim-b.um", "--deadline", "nan"], "--deadline must be"),
        (["--desk", DESK, "--pool", "sim-b.um", "--deadline", "0"], "--deadline must be > 0"),
    ],
)
def test_route_with_options_that_mean_nothing_together_exits_2(
    args: list[str], message: str
) -> None:
    _refused(["route", *args], message)


def test_route_help_line_fits_the_command_list() -> None:
    top = runner.invoke(app, ["--help"])
    line = next(ln for ln in top.stdout.splitlines() if ln.strip().startswith("route "))
    assert line.rstrip().endswith("cover a call.")  # not cut off by the help formatter
