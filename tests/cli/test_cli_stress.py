"""``pmr stress``: named scenarios, JSON and markdown output, files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

DESK = str(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
AT = ["--as-of", "2026-11-27T12:00:00Z"]
runner = CliRunner()


def test_stress_json_has_a_row_per_pool_and_the_monte_carlo() -> None:
    result = runner.invoke(
        app,
        ["stress", "--desk", DESK, *AT, "--scenario", "joint-btc-30%-vol+50%",
         "--paths", "20", "--seed", "3", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {r["pool"]: r for r in data["results"]}
    assert set(rows) == {"sim-a.pm", "sim-b.um", "sim-b.opt"}
    assert rows["sim-b.opt"]["desk_level"] == "liquidation"
    assert [m["paths"] for m in data["monte_carlo"]] == [20, 20, 20]


def test_stress_out_writes_csv_markdown_and_png_charts(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["stress", "--desk", DESK, *AT, "--scenario", "halt@sim-a", "--format", "md",
         "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Stress test: 3 pools × 1 scenarios")
    assert (tmp_path / "results.csv").read_text().startswith("pool,scenario,kind,ratio")
    assert (tmp_path / "stress_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vega" in (tmp_path / "stress_heatmap.html").read_text()


def test_stress_list_names_every_kind() -> None:
    result = runner.invoke(app, ["stress", "--desk", DESK, "--list"])
    assert result.exit_code == 0
    for name in ("joint-btc-10%-vol+0%", "hist-2022-11-ftx-72h", "depeg-usdc-2023-03@sim-a",
                 "halt@sim-b"):  # fmt: skip
        assert name in result.stdout


def test_stress_bad_input_exits_2_naming_what() -> None:
    r = runner.invoke(app, ["stress", "--desk", DESK, "--scenario", "no-such"])
    assert r.exit_code == 2
    assert "no-such" in r.output
    r = runner.invoke(app, ["stress", "--desk", DESK, "--format", "xml"])
    assert r.exit_code == 2
    assert "--format" in r.output
    r = runner.invoke(app, ["stress", "--desk", DESK, "--paths", "-1"])
    assert r.exit_code == 2
    assert "--paths" in r.output


def test_prefund_prints_the_checked_advice() -> None:
    r = runner.invoke(app, ["prefund", "--desk", DESK, *AT, "--scenario", "halt+crash@sim-b"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(
        "move 1,102,543.60 USDT (1.10 M USD) from sim-b/spot to sim-b/options"
    )
    assert "status: covered; fees 0.00 USD; checked by re-running 1 scenario(s)" in r.stdout
    bad = runner.invoke(app, ["prefund", "--desk", DESK, "--deadline", "30"])
    assert bad.exit_code == 2
    assert "--deadline" in bad.output
