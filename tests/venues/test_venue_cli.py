"""``pmr sim serve`` and ``pmr sim check`` end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import ccxt
from typer.testing import CliRunner

from core.venues.ccxt_venue import rewrite_api_urls
from flows.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_sim_check_with_example_desk_reports_same_results() -> None:
    result = CliRunner().invoke(app, ["sim", "check"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last == {"same_results": True, "steps": 28, "venues": ["sim-a", "sim-b"]}
    # The drills: each unknown outcome resolved by a lookup, identically on both transports.
    assert "lookup_drill late_apply OutcomeUnknown not_found_yet confirmed" in result.output
    assert "lookup_drill lost OutcomeUnknown not_found_yet not_found pending" in result.output
    assert "lookup_drill convert OutcomeUnknown confirmed 999.70002" in result.output
    assert "lookup_drill withdrawal OutcomeUnknown pending 20000" in result.output


def test_sim_serve_with_missing_desk_exits_2_with_one_line() -> None:
    result = CliRunner().invoke(app, ["sim", "serve", "--desk", "/nonexistent/desk.toml"])
    assert result.exit_code == 2
    assert "desk config file not found" in result.output
    assert "Traceback" not in result.output


def test_sim_serve_process_answers_an_unmodified_ccxt_client() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "sim", "serve", "--port", "0", "--venue", "sim-b"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        port = None
        for _ in range(20):
            line = proc.stdout.readline()
            assert not line.startswith("note:"), line  # every position is simulated
            m = re.search(r"on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port is not None, "server did not announce its port"
        ex = ccxt.binance({"apiKey": "pmr-sim-sim-b", "secret": "pmr-sim-secret"})
        ex.enableRateLimit = False
        rewrite_api_urls(ex, f"http://127.0.0.1:{port}/sim-b")
        ex.load_markets()
        assert ex.fetch_balance()["USDT"]["free"] == 1_600_000
        transfer = ex.transfer("USDT", 10, "spot", "linear")
        assert transfer["id"]
        # the options book (GET /eapi/v1/position, /eapi/v1/exchangeInfo, /eapi/v1/mark)
        rows = ex.fetch_positions(None, {"method": "option"})
        assert {r["info"]["symbol"]: r["info"]["quantity"] for r in rows} == {
            "BTC-270326-100000-C": "-60.00000000",
            "BTC-270326-80000-P": "-80.00000000",
            "ETH-270625-3500-C": "900.00000000",
        }
        ex.options["fetchMarkets"] = {"types": ["option"]}
        ex.load_markets(reload=True)
        unified = "BTC/USDT:USDT-270326-100000-C"
        assert ex.markets[unified]["strike"] == 100_000
        assert ex.fetch_mark_price(unified)["info"]["markIV"] == "0.52000000"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sim_serve_with_frozen_prices_gives_the_same_figures_to_every_fresh_client() -> None:
    """What docs/venues.md shows: the PM account's USDT total is the desk's, exactly."""
    seen = []
    for _ in range(2):  # two fresh servers, seconds apart: same answers
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "sim",
                "serve",
                "--port",
                "0",
                "--venue",
                "sim-a",
                "--prices",
                "frozen",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            port = None
            for _ in range(20):
                m = re.search(r"on 127\.0\.0\.1:(\d+)", proc.stdout.readline())
                if m:
                    port = int(m.group(1))
                    break
            assert port is not None, "server did not announce its port"
            ex = ccxt.binance({"apiKey": "pmr-sim-sim-a", "secret": "pmr-sim-secret"})
            ex.enableRateLimit = False
            rewrite_api_urls(ex, f"http://127.0.0.1:{port}/sim-a")
            ex.load_markets()
            pm_usdt = ex.fetch_balance({"portfolioMargin": True})["USDT"]["total"]
            marks = {r["symbol"]: r["markPrice"] for r in ex.fapiPublicGetPremiumIndex()}
            seen.append((pm_usdt, marks))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    # margin 1,300,000 + UM 250,000 + UM uPnL −533,000 at the desk's marks
    assert seen[0][0] == 1_017_000
    assert seen[0] == seen[1]
    assert seen[0][1]["BTCUSDT"] == "95040.00000000"


def test_sim_serve_with_port_in_use_exits_2_with_one_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["sim", "serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
