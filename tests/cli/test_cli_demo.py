"""`pmr demo`: the offline story end to end on the example desk."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app
from flows.demo import parse_shock

runner = CliRunner()


def test_demo_with_default_shock_raises_two_calls_and_plans_a_covered_cure() -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "Portfolio margin now" in result.output
    assert "After ETH -26%, BTC +8%, vols +30%" in result.output
    assert "Margin calls: sim-a.pm, sim-b.opt" in result.output
    # strict policy: the in-place DOGE swap (tier 2) is used before free transfers
    assert "sim-a.pm:a.margin.doge-usdt" in result.output
    assert "uncovered 0 USD" in result.output
    assert "the cost policy would cost 0.00 USD" in result.output


def test_demo_with_mild_shock_says_nothing_to_cure() -> None:
    result = runner.invoke(app, ["demo", "--shock", "ETH=-0.05", "--vol-up", "0"])
    assert result.exit_code == 0, result.output
    assert "nothing to cure" in result.output


def test_demo_with_malformed_shock_exits_2() -> None:
    result = runner.invoke(app, ["demo", "--shock", "ETH=minus-ten"])
    assert result.exit_code == 2
    assert "ASSET=MOVE" in result.output


def test_parse_shock_with_several_assets() -> None:
    assert parse_shock("eth=-0.25, BTC=0.1") == {"ETH": -0.25, "BTC": 0.1}
