"""`pmr config check` and `pmr --help` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
runner = CliRunner()


def test_config_check_with_example_desk_prints_pools_and_ok() -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    for pool in ("sim-a.pm", "sim-b.um", "sim-b.opt"):
        assert pool in result.output
    assert "is a valid desk configuration" in result.output


def test_config_check_with_broken_desk_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "desk.toml"
    bad.write_text(EXAMPLE.read_text().replace('asset = "USDC"', 'asset = "XRP"', 1))
    home = tmp_path / "home"
    home.mkdir()
    result = runner.invoke(app, ["config", "check", str(bad)], env={"PMR_HOME": str(home)})
    assert result.exit_code == 2
    assert "balances[3].asset: unknown asset 'XRP'" in result.output
    assert "Traceback" not in result.output
    assert list(home.iterdir()) == []  # nothing written


def test_console_script_lists_every_command_and_fails_cleanly(tmp_path: Path) -> None:
    pmr = Path(sys.executable).parent / "pmr"
    env = {**os.environ, "PMR_HOME": str(tmp_path)}
    helped = subprocess.run([pmr, "--help"], capture_output=True, text=True, env=env, check=False)
    assert helped.returncode == 0
    for command in ("demo", "config"):
        assert command in helped.stdout
    missing = subprocess.run(
        [pmr, "config", "check", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert missing.returncode == 2
    assert "desk config file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_config_check_error_keeps_bracketed_hints_and_odd_names_intact(tmp_path: Path) -> None:
    bad = tmp_path / "desk.toml"
    text = EXAMPLE.read_text().replace('asset = "USDC"', 'asset = "XRP"', 1)
    bad.write_text(text.replace('name = "Northwind', 'name = "[desk-1] [/x] Northwind', 1))
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert "(declare it under [assets.XRP])" in result.output
    good = tmp_path / "good.toml"
    good.write_text(EXAMPLE.read_text().replace('name = "Northwind', 'name = "[desk-1] [/x] N', 1))
    shown = runner.invoke(app, ["config", "check", str(good)])
    assert shown.exit_code == 0, shown.output
    assert "[desk-1] [/x] N" in shown.output


def _desk_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    f = tmp_path / "desk.toml"
    f.write_text(text.replace(old, new, 1))
    return f


def test_config_check_with_as_of_after_option_expiry_exits_2_naming_positions() -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLE), "--as-of", "2027-04-01T00:00Z"])
    assert result.exit_code == 2
    assert "positions[6].symbol: option 'BTC-270326-100000-C' expired" in result.stderr
    assert "positions[7].symbol: option 'BTC-270326-80000-P' expired" in result.stderr
    assert result.stdout == ""  # no summary, no "ok"


def test_config_check_with_as_of_before_expiry_says_ok() -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLE), "--as-of", "2026-11-27T12:00Z"])
    assert result.exit_code == 0, result.output
    assert "is a valid desk configuration" in result.stdout


def test_config_check_with_position_without_price_exits_2_naming_the_key(tmp_path: Path) -> None:
    desk = _desk_with(tmp_path, 'symbol = "SOLUSDT"\nmark = 180.1', 'symbol = "SOL_MARK"\nmark = 1')
    result = runner.invoke(app, ["config", "check", str(desk)])
    assert result.exit_code == 2
    assert "positions[2].symbol: no mark for 'SOLUSDT'" in result.stderr


def test_config_check_with_option_in_a_unified_pool_exits_2_like_margin(tmp_path: Path) -> None:
    # the unified model does not margin options: `pmr margin --desk` refuses, so must the check
    option_pos = 'venue = "sim-b"\nwallet = "options"\nsymbol = "ETH-270625-3500-C"'
    desk = _desk_with(
        tmp_path, option_pos, 'venue = "sim-a"\nwallet = "um"\nsymbol = "ETH-270625-3500-C"'
    )
    margin = runner.invoke(app, ["margin", "--desk", str(desk)])
    check = runner.invoke(app, ["config", "check", str(desk)])
    assert margin.exit_code == 2
    assert check.exit_code == 2
    assert "pool 'sim-a.pm' cannot be margined from the declared state" in check.stderr
    assert "ok:" not in check.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe[desk]\n", "desk config is not UTF-8 text (byte 0)"),
        (None, "desk config path is a directory, not a file"),
    ],
)
def test_config_check_with_unreadable_file_exits_2_without_traceback(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    target = tmp_path
    if content is not None:
        target = tmp_path / "desk.toml"
        target.write_bytes(content)
    result = runner.invoke(app, ["config", "check", str(target)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"pmr {version('pmr')}\n"


def test_help_of_every_command_labels_no_flag_bool_and_promises_no_missing_command() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    assert "--version" in top.stdout
    for command in (["margin"], ["route"], ["demo"], ["config", "check"], ["sim", "serve"],
                    ["stress"], ["prefund"], ["margin-call"], ["execute"], ["serve"],
                    ["monitor"]):  # fmt: skip
        helped = runner.invoke(app, [*command, "--help"])
        assert helped.exit_code == 0, command
        assert "<bool>" not in helped.stdout, command
        assert "--help" in helped.stdout


def test_config_check_with_call_below_the_venue_margin_call_warns_but_passes(
    tmp_path: Path,
) -> None:
    clean = runner.invoke(app, ["config", "check", str(EXAMPLE)])
    assert "warning" not in clean.output
    risky = tmp_path / "desk.toml"
    risky.write_text(
        EXAMPLE.read_text().replace(
            "thresholds = { warn = 2.0, call = 1.6, reduce_only = 1.35, liquidation = 1.2, "
            "target = 2.0 }",
            "thresholds = { warn = 1.5, call = 1.2, reduce_only = 1.05, liquidation = 1.0, "
            "target = 1.5 }",
            1,
        )
    )
    result = runner.invoke(app, ["config", "check", str(risky)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert (
        "warning: pools[0] sim-a.pm: thresholds.call 1.2 is below the venue's margin-call "
        "level 1.5" in flat
    )
    assert "is a valid desk configuration" in flat
