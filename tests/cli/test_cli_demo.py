"""`pmr demo`: the offline story end to end on the example desk."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.config import parse_desk
from core.margin import DeskLevel, VenueBand, evaluate_pool
from core.margin.levels import margin_calls_due
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
    # then executed on the simulated venues: the lost answer is found by lookup, not resent
    assert "fault: sim-a applies the next transfer, then its answer is lost" in result.output
    assert "leg v1/1/0 confirmed by lookup" in result.output
    assert "sim-a.pm: cured (margin_order confirmed, internal confirmed)" in result.output
    assert "sim-b.opt: cured (internal confirmed)" in result.output
    assert (
        "transfers the venues booked: sim-a 1, sim-b 1; legs sent by the executor: 3 request(s)"
        in result.output
    )


def test_demo_dry_run_stops_after_the_plan() -> None:
    result = runner.invoke(app, ["demo", "--dry-run", "--as-of", "2026-11-27T12:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was sent or recorded." in result.output
    assert "Executing on the simulated venues" not in result.output


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


AS_OF = "2026-11-27T12:00:00Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shock", "ET=-0.3"], "shock moves ET, which the desk does not price; assets it prices"),
        (["--shock", "ETH=-0.3,XRP=0.1"], "shock moves XRP"),
        (["--shock", "ETH=-0.3,eth=-0.1"], "shock moves ETH twice"),
        (["--shock", "ETH=nan"], "price move must be in (-100 %, +1000 %)"),
        (["--shock", "ETH=-1"], "price move must be in (-100 %, +1000 %)"),
        (["--vol-up", "nan"], "--vol-up must be a finite number"),
        (["--vol-up", "-1"], "--vol-up must be > -1"),
        (["--deadline", "0"], "--deadline must be > 0"),
        (["--deadline", "inf"], "--deadline must be a finite number"),
        (["--as-of", "2026-11-27"], "--as-of needs a timezone"),
        (["--desk", "."], "desk config path is a directory"),
    ],
)
def test_demo_with_bad_option_exits_2_before_printing_anything(
    args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["demo", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""  # not even the desk summary
    assert "Traceback" not in result.output


def test_demo_with_as_of_prints_the_same_bytes_twice_and_no_solve_time() -> None:
    first = runner.invoke(app, ["demo", "--as-of", AS_OF])
    second = runner.invoke(app, ["demo", "--as-of", AS_OF])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert "Valued at 2026-11-27T12:00:00+00:00 (--as-of)" in first.stdout
    assert "solved in" not in first.stdout
    assert "Margin calls: sim-a.pm, sim-b.opt" in first.stdout
    assert " ms" not in first.stdout  # measured latencies are left out too


def test_demo_with_as_of_values_options_at_that_instant() -> None:
    # option time value shrinks as expiry nears, so the option pool's numbers move with as-of
    early = runner.invoke(app, ["demo", "--as-of", "2026-06-01T00:00:00Z"])
    late = runner.invoke(app, ["demo", "--as-of", "2027-03-01T00:00:00Z"])
    assert early.exit_code == 0, early.output
    assert late.exit_code == 0, late.output
    assert early.stdout != late.stdout


def test_demo_with_as_of_after_an_option_expiry_exits_2_naming_the_position() -> None:
    result = runner.invoke(app, ["demo", "--as-of", "2027-04-01T00:00:00Z"])
    assert result.exit_code == 2
    assert "positions[6].symbol: option 'BTC-270326-100000-C' expired" in result.stderr
    assert result.stdout == ""


def test_breached_pools_follow_the_desk_level_even_when_the_venue_band_is_normal() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
    data = tomllib.loads(example.read_text())
    # sim-b.opt sits at a ratio of 1.99: normal for the venue (> 1.5); a desk calling at 2.1
    # raises a margin call now, before the venue restricts anything.
    data["pools"][2]["thresholds"] = {"warn": 2.5, "call": 2.1, "reduce_only": 1.6,
                                      "liquidation": 1.3, "target": 2.5}  # fmt: skip
    desk = parse_desk(data)
    state = desk.initial_portfolio(datetime(2026, 11, 27, 12, tzinfo=UTC))
    reports = {p.id: evaluate_pool(desk, p.id, state) for p in desk.pools}
    opt = reports["sim-b.opt"]
    assert (opt.venue_band, opt.desk_level) == (VenueBand.NORMAL, DeskLevel.CALL)
    assert [due.pool_id for due in margin_calls_due(desk, reports)] == ["sim-b.opt"]
