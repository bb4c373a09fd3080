"""The scenario library: typed, named scenarios with figures traced to real data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from core.config import load_desk
from core.errors import DataError
from core.stress.scenarios import (
    Scenario,
    ScenarioKind,
    VenueConditions,
    beta_to_btc,
    depeg_scenarios,
    historical_scenarios,
    joint_scenario,
    library,
)
from core.stress.shocks import shock_portfolio

REPO = Path(__file__).resolve().parents[2]
DESK = load_desk(REPO / "examples" / "desk.toml")
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STATE = DESK.initial_portfolio(AT)
INSTRUMENTS = DESK.instrument_map()


def _closes(shared: Path, asset: str) -> dict[str, float]:
    with (shared / "data" / "prices" / f"{asset}-USD_1d.csv").open() as fh:
        return {row["date"]: float(row["close"]) for row in csv.DictReader(fh)}


@pytest.mark.shared
def test_raw_btc_close_on_black_thursday_is_about_4800(shared_dir: Path) -> None:
    assert _closes(shared_dir, "BTC")["2020-03-12"] == pytest.approx(4800.0)


@pytest.mark.shared
def test_daily_figures_match_the_raw_files_by_hand(shared_dir: Path) -> None:
    """FTX 72 h BTC (daily basis): close 11-09 / close 11-06, times USDT's own move."""
    btc, usdt = _closes(shared_dir, "BTC"), _closes(shared_dir, "USDT")
    quoted = btc["2022-11-09"] / btc["2022-11-06"] - 1
    usd = (1 + quoted) * (usdt["2022-11-09"] / usdt["2022-11-06"]) - 1
    s = {x.name: x for x in historical_scenarios()}["hist-2022-11-ftx-72h"]
    assert s.moves["BTC"] == pytest.approx(usd, abs=1e-6)
    assert s.moves["BTC"] == pytest.approx(-0.2395, abs=1e-3)


@pytest.mark.shared
def test_committed_data_files_are_what_the_script_derives(shared_dir: Path) -> None:
    env = {**os.environ, "PMR_SHARED_DIR": str(shared_dir)}
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stress_data.py"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_historical_library_covers_every_event_and_leaves_missing_assets_out() -> None:
    scen = {s.name: s for s in historical_scenarios(["BTC", "ETH", "SOL", "USDT", "USDC"])}
    events = {n.removeprefix("hist-").rsplit("-", 1)[0] for n in scen}
    assert events == {
        "2020-03-black-thursday",
        "2021-05-19",
        "2022-05-luna",
        "2022-11-ftx",
        "2023-03-usdc",
        "2024-08-05",
        "2025-10-10",
    }
    covid = scen["hist-2020-03-black-thursday-24h"]
    assert "SOL" not in covid.moves  # SOL was listed in Aug 2020: left unmoved, said so
    assert "no figure for SOL" in covid.source
    assert covid.moves["BTC"] < -0.40
    assert scen["hist-2023-03-usdc-24h"].moves["USDC"] == pytest.approx(-0.1208, abs=1e-3)
    assert all(s.kind is ScenarioKind.HISTORICAL for s in scen.values())
    assert "hist-2022-05-luna-1h" not in scen  # no hourly candles for May 2022


def test_joint_shock_moves_alts_by_beta_and_keeps_stables() -> None:
    s = joint_scenario(-0.2, vol_up_frac=0.5, assets=["BTC", "ETH", "SOL", "USDT", "LINK"],
                       stablecoins=["USDT"])  # fmt: skip
    beta = beta_to_btc()
    assert s.moves["ETH"] == pytest.approx(-0.2 * beta["ETH"])
    assert 1.0 < beta["ETH"] < 1.2
    assert "USDT" not in s.moves
    assert s.moves["LINK"] == -0.2
    assert "β = 1 assumed for LINK" in s.source
    assert joint_scenario(-0.9, assets=["DOGE"]).moves["DOGE"] == -0.99


def test_depeg_is_venue_local() -> None:
    [s] = depeg_scenarios(["sim-a"], ["USDC"])
    assert s.moves_on("sim-a") == {"USDC": pytest.approx(-0.1226)}
    assert s.moves_on("sim-b") == {}


def test_usdt_depeg_alone_leaves_btc_usd_value_and_lifts_usdt_quoted_marks() -> None:
    shocked = shock_portfolio(STATE, INSTRUMENTS, {"USDT": -0.35})
    assert shocked.prices["BTC"] == STATE.prices["BTC"]
    assert shocked.prices["BTCUSDT"].mark == STATE.prices["BTCUSDT"].mark / Decimal("0.65")
    assert shocked.prices["BTCUSD_PERP"].mark == STATE.prices["BTCUSD_PERP"].mark  # USD-quoted
    both = shock_portfolio(STATE, INSTRUMENTS, {"BTC": -0.2, "USDT": -0.2})
    assert both.prices["BTCUSDT"].mark == STATE.prices["BTCUSDT"].mark  # same in USDT terms


def test_library_names_are_unique_and_cover_every_kind() -> None:
    lib = library(venues=["sim-a", "sim-b"], assets=list(DESK.assets),
                  stablecoins=["USDT", "USDC"])  # fmt: skip
    kinds = {s.kind for s in lib.values()}
    assert kinds == {ScenarioKind.JOINT, ScenarioKind.HISTORICAL, ScenarioKind.DEPEG,
                     ScenarioKind.VENUE}  # fmt: skip
    assert lib["halt@sim-a"].conditions.halted_venues == {"sim-a"}
    assert lib["depeg-usdc-2023-03@sim-b"].venue_moves == {
        "sim-b": {"USDC": pytest.approx(-0.1226)}
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"moves": {"BTC": float("nan")}}, "finite fraction"),
        ({"moves": {"BTC": -1.0}}, "finite fraction"),
        ({"venue_moves": {"v": {"USDC": 11.0}}}, "venue 'v'"),
        ({"vol_up_frac": -1.0}, "vol_up_frac"),
    ],
)
def test_bad_scenarios_are_refused_naming_the_scenario(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=message) as err:
        Scenario("bad-one", ScenarioKind.JOINT, "bad", **kwargs)  # type: ignore[arg-type]
    assert "bad-one" in str(err.value)


def test_bad_venue_conditions_are_refused() -> None:
    with pytest.raises(DataError, match="withdrawal_delay_x"):
        VenueConditions(withdrawal_delay_x=0.5)
    with pytest.raises(DataError, match="weight_limit_frac"):
        VenueConditions(weight_limit_frac=0.0)


def test_a_gap_in_an_event_window_is_refused_naming_event_and_date(tmp_path: Path) -> None:
    """A missing daily candle inside an event window would silently stretch the window."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "stress_data", REPO / "scripts" / "stress_data.py"
    )
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["stress_data"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    from datetime import date

    import polars as pl

    days = [date(2022, 11, d) for d in (2, 3, 4, 5, 7, 8, 9)]  # 11-06 is missing
    frame = pl.DataFrame({"t": days, "close": [20_000.0 + i for i in range(len(days))]})
    ftx = next(e for e in mod.EVENTS if e.id == "2022-11-ftx")
    with pytest.raises(
        SystemExit, match=r"event 2022-11-ftx: a candle is missing after 2022-11-05"
    ):
        mod._daily_window(frame, ftx, 3)
