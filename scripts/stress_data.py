"""Regenerate pmr's stress-scenario data from the raw candles in ``$PMR_SHARED_DIR/data/prices``.

Writes two small files the product ships (``core/stress/data/``); the raw candles are third-party
data and are never copied into the repository, only these derived figures (with attribution):

``historical_returns.json``
    Per crash event, per asset, the worst close-to-close return over 1 h, 24 h and 72 h windows
    that *end* inside the event's days, with the window's start and end and the basis it was
    measured on (hourly candles where the crash window has them, daily closes otherwise).
    Crypto pairs are Binance ``XXXUSDT``: the figure is converted to USD with the USDT/USD
    close-to-close over the same calendar days (Yahoo's aggregate; 1.00 where that series ends,
    2025-02-11), so every figure is a USD move, as a scenario states them (DESIGN §4).
``calibration.json``
    The Student-t copula the Monte Carlo draws from: per asset the t marginal of daily and
    3-day log returns (MLE ``df``, ``loc``, ``scale``), the correlation matrix from Kendall's tau
    (``sin(π τ / 2)``, robust under fat tails), the copula's degrees of freedom (profile MLE
    on a grid) and each asset's OLS beta to BTC (joint shocks move alts by β × BTC), over the common history 2020-08-12 .. 2025-12-31 (SOL's listing bounds it).

Run: ``PMR_SHARED_DIR=../shared uv run python scripts/stress_data.py`` (``--check`` compares
with the committed files instead of writing them; the test suite does that when the data is on hand).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "core" / "stress" / "data"

#: Crypto assets with Binance daily candles (USDT-quoted), in calibration order.
CRYPTO = ("BTC", "ETH", "BNB", "XRP", "DOGE", "SOL", "ADA", "TRX", "BCH")
STABLES = ("USDT", "USDC")
CALIBRATION_START = date(2020, 8, 12)  # first day with a SOL return (listed 2020-08-11)
CALIBRATION_END = date(2025, 12, 31)

ATTRIBUTION = (
    "Derived from real exchange candles: Binance spot XXXUSDT daily candles (CryptoDataDownload "
    "exports via github.com/mschindler779/CausCrypto, The Unlicense), Binance hourly candles "
    "(github.com/andrewsiah/crypto-historical-data; github.com/MikeBrants/friendly-fishstick, MIT), "
    "Kraken XBT/USD hourly and Binance.US implied USDC/USD (github.com/cl8550-crypto/iaqf_analysis), "
    "USDT-USD and USDC-USD daily from Yahoo Finance's aggregate index "
    "(github.com/budydeveloper/crypto-dataset). Prices are the exchanges' market data. "
    "Regenerate with scripts/stress_data.py."
)


@dataclass(frozen=True)
class Event:
    id: str
    title: str
    first_day: date  # windows must END inside [first_day, last_day] (UTC days)
    last_day: date


EVENTS = (
    Event(
        "2020-03-black-thursday",
        "COVID crash, Black Thursday",
        date(2020, 3, 12),
        date(2020, 3, 13),
    ),
    Event("2021-05-19", "China mining ban sell-off", date(2021, 5, 12), date(2021, 5, 23)),
    Event("2022-05-luna", "LUNA/UST collapse", date(2022, 5, 5), date(2022, 5, 12)),
    Event("2022-11-ftx", "FTX collapse", date(2022, 11, 6), date(2022, 11, 9)),
    Event("2023-03-usdc", "USDC de-peg (SVB)", date(2023, 3, 10), date(2023, 3, 11)),
    Event("2024-08-05", "Yen carry-trade unwind", date(2024, 8, 2), date(2024, 8, 5)),
    Event("2025-10-10", "October 2025 liquidation cascade", date(2025, 10, 10), date(2025, 10, 11)),
)
WINDOWS_H = {"1h": 1, "24h": 24, "72h": 72}


def _prices_dir() -> Path:
    shared = Path(os.environ.get("PMR_SHARED_DIR", ROOT.parent / "shared"))
    d = shared / "data" / "prices"
    if not d.is_dir():
        sys.exit(f"no price data at {d} (set PMR_SHARED_DIR to the shared folder)")
    return d


def _daily(prices: Path, asset: str) -> pl.DataFrame:
    df = pl.read_csv(prices / f"{asset}-USD_1d.csv", infer_schema_length=0)
    return df.select(
        pl.col("date").str.to_date().alias("t"), pl.col("close").cast(pl.Float64)
    ).sort("t")


def _hourly(prices: Path, asset: str) -> pl.DataFrame | None:
    path = prices / f"{asset}-USD_1h.csv"
    if asset == "USDC":
        path = prices / "USDC-USD_1h_implied.csv"
    if not path.exists():
        return None
    df = pl.read_csv(path, infer_schema_length=0)
    if asset == "USDC":  # one series per venue: keep Binance.US (a venue, not an aggregate)
        df = df.filter(pl.col("source").str.starts_with("binanceus")).rename(
            {"usdc_usd_implied": "close"}
        )
    return df.select(
        pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").alias("t"),
        pl.col("close").cast(pl.Float64),
    ).sort("t")


def _worst(
    times: list[Any], closes: np.ndarray, lag: int, ends_ok: np.ndarray
) -> tuple[float, Any, Any] | None:
    """The lowest ``close[i] / close[i - lag] - 1`` over ``i`` with ``ends_ok[i]``, with its times."""
    best: tuple[float, Any, Any] | None = None
    for i in range(lag, len(closes)):
        if not ends_ok[i]:
            continue
        r = closes[i] / closes[i - lag] - 1.0
        if best is None or r < best[0]:
            best = (r, times[i - lag], times[i])
    return best


def _hourly_window(h: pl.DataFrame, ev: Event, hours: int) -> tuple[float, Any, Any] | None:
    """Worst ``hours``-bar return ending inside the event, only over consecutive hourly bars."""
    lo = datetime.combine(ev.first_day, datetime.min.time(), UTC)
    hi = datetime.combine(ev.last_day + timedelta(days=1), datetime.min.time(), UTC)
    sub = h.filter((pl.col("t") >= lo - timedelta(hours=hours)) & (pl.col("t") < hi))
    if sub.height <= hours:
        return None
    times = sub["t"].to_list()
    _no_gap(times, timedelta(hours=1), ev)  # the window must be whole: consecutive bars
    # Every window ending inside the event must be measurable (the 1 h window ending at the
    # event's first hour may be missing: the crash windows start at 00:00 of a quiet day).
    if times[0] > lo - timedelta(hours=hours) + timedelta(hours=1 if hours == 1 else 0):
        return None
    ends_ok = np.array([lo <= t < hi for t in times])
    return _worst(times, sub["close"].to_numpy(), hours, ends_ok)


def _daily_window(d: pl.DataFrame, ev: Event, days: int) -> tuple[float, Any, Any] | None:
    sub = d.filter(
        (pl.col("t") >= ev.first_day - timedelta(days=days)) & (pl.col("t") <= ev.last_day)
    )
    times = sub["t"].to_list()
    if not times or times[0] > ev.first_day - timedelta(days=days) or times[-1] < ev.last_day:
        return None  # the asset did not trade (or the file stops) in this window
    _no_gap(times, timedelta(days=1), ev)
    ends_ok = np.array([ev.first_day <= t <= ev.last_day for t in times])
    return _worst(times, sub["close"].to_numpy(), days, ends_ok)


class GapError(SystemExit):
    """A candle missing inside an event's window: the window's return would be wrong."""


def _no_gap(times: list[Any], step: timedelta, ev: Event) -> None:
    """Refuse a window with a missing candle, naming the event and the first missing time
    (a positional lag over a gap would silently measure a longer window)."""
    for a, b in itertools.pairwise(times):
        if b - a != step:
            raise GapError(
                f"event {ev.id}: a candle is missing after {a} (next is {b}); "
                "the data files must be gap-free inside every event window"
            )


def _day_of(t: Any) -> date:
    return t.date() if isinstance(t, datetime) else t


def _usdt_move(usdt: pl.DataFrame, start: Any, end: Any, basis: str) -> float | None:
    """USDT/USD close-to-close over the calendar days the window spans (None: no data)."""
    d0 = _day_of(start) - timedelta(days=1) if basis == "1h" else _day_of(start)
    d1 = _day_of(end)
    c = dict(zip(usdt["t"].to_list(), usdt["close"].to_list(), strict=True))
    if d0 not in c or d1 not in c:
        return None
    return float(c[d1] / c[d0] - 1.0)


def _iso(t: Any) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ") if isinstance(t, datetime) else t.isoformat()


def historical(prices: Path) -> dict[str, Any]:
    daily = {a: _daily(prices, a) for a in (*CRYPTO, *STABLES)}
    hourly = {a: _hourly(prices, a) for a in (*CRYPTO, *STABLES)}
    usdt = daily["USDT"]
    events: dict[str, Any] = {}
    for ev in EVENTS:
        windows: dict[str, dict[str, Any]] = {}
        for name, hours in WINDOWS_H.items():
            per_asset: dict[str, Any] = {}
            for asset in (*CRYPTO, *STABLES):
                h = hourly[asset]
                found = _hourly_window(h, ev, hours) if h is not None else None
                basis = "1h"
                if found is None and hours % 24 == 0:
                    found, basis = _daily_window(daily[asset], ev, hours // 24), "1d"
                if found is None:
                    continue
                r, start, end = found
                entry: dict[str, Any] = {"start": _iso(start), "end": _iso(end), "basis": basis}
                if asset in CRYPTO:
                    u = _usdt_move(usdt, start, end, basis)
                    entry["usdt_quoted"] = round(r, 6)
                    entry["usdt_usd"] = None if u is None else round(u, 6)
                    r = (1.0 + r) * (1.0 + (u or 0.0)) - 1.0
                entry["return"] = round(r, 6)
                per_asset[asset] = entry
            windows[name] = per_asset
        events[ev.id] = {
            "title": ev.title,
            "days": [ev.first_day.isoformat(), ev.last_day.isoformat()],
            "windows": windows,
        }
    return {
        "attribution": ATTRIBUTION,
        "method": (
            "worst close-to-close return over windows of 1 h, 24 h and 72 h ending inside the "
            "event's UTC days; hourly candles where the crash window has them, daily closes "
            "otherwise (1 h needs hourly); USDT-quoted pairs converted to USD with USDT/USD over "
            "the same days (usdt_usd null: no series, taken as 1.00)"
        ),
        "events": events,
    }


def _t_fit(x: np.ndarray) -> dict[str, float]:
    from scipy import stats

    df, loc, scale = stats.t.fit(x)
    return {"df": round(float(df), 4), "loc": round(float(loc), 8), "scale": round(float(scale), 8)}


def _copula(returns: np.ndarray) -> dict[str, Any]:
    """Kendall-tau correlation and profile-MLE degrees of freedom of a t copula."""
    from scipy import stats

    n, k = returns.shape
    corr = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            tau = stats.kendalltau(returns[:, i], returns[:, j]).statistic
            corr[i, j] = corr[j, i] = math.sin(math.pi * tau / 2.0)
    # Nearest positive-definite (tau estimates need not be jointly consistent).
    w, v = np.linalg.eigh(corr)
    w = np.clip(w, 1e-6, None)
    corr = v @ np.diag(w) @ v.T
    dsq = np.sqrt(np.diag(corr))
    corr = corr / np.outer(dsq, dsq)
    u = (stats.rankdata(returns, axis=0) - 0.5) / n  # pseudo-observations
    best: tuple[float, float] | None = None
    for nu in np.arange(2.0, 30.01, 0.5):
        z = stats.t.ppf(u, nu)
        ll = stats.multivariate_t(shape=corr, df=nu).logpdf(z).sum() - stats.t.logpdf(z, nu).sum()
        if best is None or ll > best[1]:
            best = (float(nu), float(ll))
    assert best is not None
    return {"df": best[0], "corr": [[round(float(c), 6) for c in row] for row in corr]}


def calibration(prices: Path) -> dict[str, Any]:
    frames = [
        _daily(prices, a)
        .filter(pl.col("t").is_between(CALIBRATION_START - timedelta(days=1), CALIBRATION_END))
        .select("t", pl.col("close").log().diff().alias(a))
        for a in CRYPTO
    ]
    joined = frames[0]
    for f in frames[1:]:
        joined = joined.join(f, on="t", how="inner")
    joined = joined.drop_nulls().sort("t")
    one = joined.select(CRYPTO).to_numpy()
    # Non-overlapping 3-day log returns (sums of three consecutive daily ones).
    m = (len(one) // 3) * 3
    three = one[:m].reshape(-1, 3, len(CRYPTO)).sum(axis=1)
    out: dict[str, Any] = {
        "attribution": ATTRIBUTION,
        "assets": list(CRYPTO),
        "history": [joined["t"][0].isoformat(), joined["t"][-1].isoformat()],
        "observations": {"1d": len(one), "3d": len(three)},
    }
    for name, x in (("1d", one), ("3d", three)):
        btc = x[:, 0] - x[:, 0].mean()
        out[name] = {
            "marginals": {a: _t_fit(x[:, i]) for i, a in enumerate(CRYPTO)},
            # OLS beta of each asset's log return on BTC's: alts move β × BTC in joint shocks.
            "beta_to_btc": {
                a: round(float(btc @ (x[:, i] - x[:, i].mean()) / (btc @ btc)), 4)
                for i, a in enumerate(CRYPTO)
            },
            "copula": _copula(x),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    prices = _prices_dir()
    outputs = {
        "historical_returns.json": historical(prices),
        "calibration.json": calibration(prices),
    }
    stale = []
    for name, data in outputs.items():
        text = json.dumps(data, indent=1, sort_keys=False) + "\n"
        path = OUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({len(text):,} bytes)")
    if stale:
        sys.exit(f"stale: {', '.join(stale)} (run scripts/stress_data.py)")


if __name__ == "__main__":
    main()
