"""`pmr margin` options as a user gives them: meaningless combinations, files, --as-of, --table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

ROOT = Path(__file__).resolve().parents[2]
DESK = str(ROOT / "examples" / "desk.toml")
PORTFOLIO = str(ROOT / "examples" / "portfolio.json")
AS_OF = "2026-11-27T12:00:00Z"
runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--portfolio", PORTFOLIO, "--pool", "sim-a.pm"], "--pool goes with --desk"),
        (["--portfolio", PORTFOLIO, "--as-of", AS_OF], "--as-of goes with --desk"),
        (["--desk", DESK, "--params", PORTFOLIO], "--params goes with --portfolio"),
        (["--desk", DESK, "--portfolio", PORTFOLIO], "cannot be combined"),
        ([], "give one of --portfolio FILE or --desk FILE"),
        (["--desk", DESK, "--pool", "nope"], "unknown pool; known: sim-a.pm, sim-b.um"),
        (["--desk", DESK, "--as-of", "noon"], "--as-of must be an ISO-8601 instant"),
    ],
)
def test_margin_with_meaningless_options_exits_2_and_prints_no_report(
    args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["margin", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""


def test_margin_with_portfolio_error_uses_the_bracketed_key_path(tmp_path: Path) -> None:
    data = json.loads(Path(PORTFOLIO).read_text())
    data["positions"][0]["qty"] = "lots"
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(data))
    result = runner.invoke(app, ["margin", "--portfolio", str(bad)])
    assert result.exit_code == 2
    assert "positions[0].qty: Input should be a valid decimal" in result.stderr
    assert "positions.0" not in result.stderr


@pytest.mark.parametrize("option", ["--portfolio", "--params"])
def test_margin_with_a_directory_for_a_file_exits_2_naming_it(tmp_path: Path, option: str) -> None:
    args = ["--portfolio", PORTFOLIO, "--params", str(tmp_path)]
    if option == "--portfolio":
        args = ["--portfolio", str(tmp_path)]
    result = runner.invoke(app, ["margin", *args])
    assert result.exit_code == 2
    assert "path is a directory, not a file" in result.stderr
    assert str(tmp_path) in result.stderr
    assert "Traceback" not in result.output


def test_margin_with_non_utf8_portfolio_exits_2_naming_the_byte(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_bytes(Path(PORTFOLIO).read_bytes().replace(b"{", b"{\xe9", 1))
    result = runner.invoke(app, ["margin", "--portfolio", str(bad)])
    assert result.exit_code == 2
    assert "portfolio is not UTF-8 text (byte 1)" in result.stderr


def test_margin_desk_with_as_of_is_byte_identical_and_stamped_at_it() -> None:
    first = runner.invoke(app, ["margin", "--desk", DESK, "--as-of", AS_OF])
    second = runner.invoke(app, ["margin", "--desk", DESK, "--as-of", AS_OF])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    reports = json.loads(first.stdout)
    assert {r["as_of"] for r in reports} == {"2026-11-27T12:00:00Z"}


def test_margin_desk_pool_with_as_of_after_expiry_exits_2() -> None:
    result = runner.invoke(
        app, ["margin", "--desk", DESK, "--pool", "sim-b.opt", "--as-of", "2027-04-01T00:00Z"]
    )
    assert result.exit_code == 2
    assert "positions[6].symbol: option 'BTC-270326-100000-C' expired" in result.stderr


def test_margin_table_gives_every_summary_column_a_header() -> None:
    result = runner.invoke(app, ["margin", "--portfolio", PORTFOLIO, "--table"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "figure" in line)
    assert "USD" in header
    assert "in USDT" in header
