"""Monte Carlo paths: reproducible by seed, correlated as calibrated, fat-tailed, no silent zeros."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from core.errors import DataError
from core.stress.montecarlo import calibration, draw_returns

ASSETS = ["BTC", "ETH", "SOL", "USDT"]


def test_same_seed_same_paths_other_seed_other_paths() -> None:
    a = draw_returns(ASSETS, paths=500, seed=7, stablecoins=["USDT"])
    b = draw_returns(ASSETS, paths=500, seed=7, stablecoins=["USDT"])
    c = draw_returns(ASSETS, paths=500, seed=8, stablecoins=["USDT"])
    assert a.shape == (500, 4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a[:, 3] == 0.0)  # stablecoins do not diffuse


def test_sample_correlation_matches_the_calibration() -> None:
    """Kendall's tau of the draws ≈ the calibrated one: corr = sin(π τ / 2)."""
    cal = calibration("1d")
    r = draw_returns(["BTC", "ETH", "DOGE"], paths=20_000, seed=1)
    i = {a: k for k, a in enumerate(cal.assets)}
    for x, y in (("BTC", "ETH"), ("BTC", "DOGE"), ("ETH", "DOGE")):
        tau = stats.kendalltau(r[:, ["BTC", "ETH", "DOGE"].index(x)],
                               r[:, ["BTC", "ETH", "DOGE"].index(y)]).statistic  # fmt: skip
        assert np.sin(np.pi * tau / 2) == pytest.approx(cal.corr[i[x], i[y]], abs=0.02)


def test_tails_are_fatter_than_normal_and_scale_with_horizon() -> None:
    one = draw_returns(["BTC"], paths=50_000, seed=3)[:, 0]
    three = draw_returns(["BTC"], paths=50_000, seed=3, horizon="3d")[:, 0]
    assert stats.kurtosis(np.log1p(one)) > 3.0  # excess kurtosis: fat tails
    assert np.quantile(three, 0.01) < np.quantile(one, 0.01) < -0.05
    assert one.min() > -1.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), paths=st.integers(1, 50))
def test_every_return_is_a_price_move_above_minus_one(seed: int, paths: int) -> None:
    r = draw_returns(["BTC", "ETH", "SOL", "DOGE", "TRX"], paths=paths, seed=seed)
    assert np.all(np.isfinite(r))
    assert np.all(r >= -0.999)
    assert np.all(r <= 9.0)


def test_bad_input_is_named() -> None:
    with pytest.raises(DataError, match="at least one path"):
        draw_returns(["BTC"], paths=0, seed=1)
    with pytest.raises(DataError, match="no Monte Carlo calibration") as err:
        draw_returns(["BTC", "LINK"], paths=10, seed=1)
    assert "LINK" in str(err.value)
    with pytest.raises(DataError, match="horizon"):
        draw_returns(["BTC"], paths=10, seed=1, horizon="2d")


def test_pool_distribution_is_reproducible_and_consistent() -> None:
    from datetime import UTC, datetime
    from pathlib import Path

    from core.config import load_desk
    from core.stress.montecarlo import pool_monte_carlo

    desk = load_desk(Path(__file__).resolve().parents[2] / "examples" / "desk.toml")
    state = desk.initial_portfolio(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    a = pool_monte_carlo(desk, state, paths=40, seed=5)
    b = pool_monte_carlo(desk, state, paths=40, seed=5)
    assert [x.pool_id for x in a] == [p.id for p in desk.pools]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.ratios, y.ratios, equal_nan=True)
        assert x.quantiles["p1"] <= x.quantiles["p5"] <= x.quantiles["p50"]
        assert 0.0 <= x.p_liquidation <= x.p_call <= 1.0
        assert x.es99_deficit_usd >= 0.0
