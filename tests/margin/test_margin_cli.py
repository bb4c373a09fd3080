"""``pmr margin`` end to end through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from core.margin.report import MarginReport
from flows import cli_margin

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    cli_margin.register(app)

    @app.command("version")
    def version() -> None:  # a second command keeps typer in multi-command mode
        typer.echo("test")

    return app


def test_cli_with_portfolio_prints_a_report_that_parses_back() -> None:
    res = runner.invoke(_app(), ["margin", "--portfolio", str(ROOT / "examples/portfolio.json")])
    assert res.exit_code == 0, res.output
    report = MarginReport.from_json(res.stdout)
    assert report.pool_id == "binance-pm-example"
    assert str(report.mm_usd) == "4728.40000000"


def test_cli_with_model_override_runs_the_standard_model() -> None:
    res = runner.invoke(
        _app(),
        ["margin", "--portfolio", str(ROOT / "examples/portfolio.json"), "--model", "standard"],
    )
    assert res.exit_code == 0, res.output
    report = MarginReport.from_json(res.stdout)
    assert report.model.value == "standard"
    assert {s.wallet for s in report.silos} == {"margin", "um", "cm"}


def test_cli_with_desk_reports_every_pool() -> None:
    res = runner.invoke(_app(), ["margin", "--desk", str(ROOT / "examples/desk.toml")])
    assert res.exit_code == 0, res.output
    pools = [r["pool_id"] for r in json.loads(res.stdout)]
    assert pools == ["sim-a.pm", "sim-b.um", "sim-b.opt"]


def test_cli_with_desk_table_prints_tables() -> None:
    res = runner.invoke(_app(), ["margin", "--desk", str(ROOT / "examples/desk.toml"), "--table"])
    assert res.exit_code == 0, res.output
    assert "pool sim-a.pm" in res.stdout
    assert "maintenance margin" in res.stdout


def test_cli_with_unknown_model_exits_2_with_one_line() -> None:
    res = runner.invoke(
        _app(), ["margin", "--portfolio", str(ROOT / "examples/portfolio.json"), "--model", "x"]
    )
    assert res.exit_code == 2
    assert "unknown margin model 'x'" in res.output
    assert "Traceback" not in res.output


def test_cli_with_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    res = runner.invoke(_app(), ["margin", "--portfolio", str(missing)])
    assert res.exit_code == 2
    assert "none.json" in res.output


def test_cli_with_two_prices_for_one_symbol_exits_2_and_prints_no_report(tmp_path: Path) -> None:
    data = json.loads((ROOT / "examples/portfolio.json").read_text())
    data["prices"].append({"symbol": "BTC", "mark": "1"})
    bad = tmp_path / "dup.json"
    bad.write_text(json.dumps(data))
    res = runner.invoke(_app(), ["margin", "--portfolio", str(bad)])
    assert res.exit_code == 2
    assert "two prices for one symbol" in res.output
    assert "adjusted_equity_usd" not in res.output
