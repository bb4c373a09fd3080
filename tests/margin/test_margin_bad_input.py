"""Bad input: a clear error naming the position or asset, and never a partial report."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from margin_factories import AT, bal, inverse, linear, option, pool, portfolio, pos, px

from core.errors import ConfigError, DataError, NaNPriceError, StalePriceError, UnknownAssetError
from core.margin.api import evaluate_portfolio
from core.margin.params import Bracket, CollateralRate, MarginParams
from core.margin.portfolio_file import load_portfolio_file

D = Decimal
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.json"


def _params() -> MarginParams:
    return MarginParams(
        collateral_rates={"USDT": CollateralRate.flat(1)},
        brackets={"BTCUSDT": (Bracket(floor_usd=D(0), mmr=D("0.005")),)},
    )


def test_stale_price_with_age_over_limit_raises_naming_the_symbol() -> None:
    old = AT - timedelta(seconds=121)
    pf = portfolio(
        [bal("USDT", 1000)],
        [pos(linear(), 1, 90_000)],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000, at=old)],
    )
    with pytest.raises(StalePriceError, match="BTCUSDT"):
        evaluate_portfolio(pf, pool(), _params())


def test_stale_price_of_an_unrelated_symbol_does_not_block_the_pool() -> None:
    old = AT - timedelta(hours=5)
    pf = portfolio([bal("USDT", 1000)], [], [px("USDT", 1), px("DOGE", "0.2", at=old)])
    assert evaluate_portfolio(pf, pool(), _params()).adjusted_equity_usd == 1000


def test_position_without_price_raises_unknown_asset_naming_the_position() -> None:
    pf = portfolio(
        [bal("USDT", 1000)], [pos(linear(), 1, 90_000)], [px("BTC", 95_000), px("USDT", 1)]
    )
    with pytest.raises(UnknownAssetError, match="v/um/BTCUSDT"):
        evaluate_portfolio(pf, pool(), _params())


def test_balance_asset_without_price_raises_naming_the_balance() -> None:
    pf = portfolio([bal("USDT", 1000), bal("SOL", 3)], [], [px("USDT", 1)])
    with pytest.raises(UnknownAssetError, match="SOL"):
        evaluate_portfolio(pf, pool(), _params())


def test_option_past_expiry_raises_naming_the_position() -> None:
    opt = option(100_000, days=1)
    later = AT + timedelta(days=2)
    pf = portfolio(
        [bal("USDT", 10_000, "options")],
        [pos(opt, -1, 500, "options")],
        [
            px("BTC", 95_000, at=later),
            px("USDT", 1, at=later),
            px(opt.symbol, 10, iv="0.5", at=later),
        ],
        as_of=later,
    )
    with pytest.raises(DataError, match="past expiry"):
        evaluate_portfolio(pf, pool(("options",), "scenario"), _params())


def test_option_without_iv_in_scenario_model_raises_naming_the_position() -> None:
    opt = option(100_000)
    pf = portfolio(
        [bal("USDT", 10_000, "options")],
        [pos(opt, -1, 500, "options")],
        [px("BTC", 95_000), px("USDT", 1), px(opt.symbol, 900)],
    )
    with pytest.raises(DataError, match=opt.symbol):
        evaluate_portfolio(pf, pool(("options",), "scenario"), _params())


def test_unknown_model_raises_config_error_listing_known_models() -> None:
    pf = portfolio([bal("USDT", 1)], [], [px("USDT", 1)])
    with pytest.raises(ConfigError, match="unified, scenario, standard"):
        evaluate_portfolio(pf, pool(), _params(), model="span")


def test_inverse_position_in_usdm_wallet_is_refused_as_inconsistent_units() -> None:
    pf = portfolio(
        [bal("USDT", 1)],
        [pos(inverse(), 10, 90_000, "um")],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSD_PERP", 95_000)],
    )
    with pytest.raises(DataError, match="USDⓈ-M"):
        evaluate_portfolio(pf, pool(), _params())


def test_linear_position_in_coinm_wallet_is_refused_as_inconsistent_units() -> None:
    pf = portfolio(
        [bal("BTC", 1, "cm")],
        [pos(linear(), 1, 90_000, "cm")],
        [px("BTC", 95_000), px("USDT", 1), px("BTCUSDT", 95_000)],
    )
    with pytest.raises(DataError, match="COIN-M"):
        evaluate_portfolio(pf, pool(("cm",)), _params())


def test_unified_model_with_option_position_is_refused() -> None:
    opt = option(100_000)
    pf = portfolio(
        [bal("USDT", 10_000, "options")],
        [pos(opt, 1, 500, "options")],
        [px("BTC", 95_000), px("USDT", 1), px(opt.symbol, 900, iv="0.5")],
    )
    with pytest.raises(DataError, match="does not margin options"):
        evaluate_portfolio(pf, pool(("options",)), _params())


def test_future_without_bracket_table_is_refused_naming_the_symbol() -> None:
    eth = linear("ETHUSDT", "ETH")
    pf = portfolio(
        [bal("USDT", 1000)],
        [pos(eth, 1, 3000)],
        [px("ETH", 3000), px("USDT", 1), px("ETHUSDT", 3000)],
    )
    with pytest.raises(DataError, match="ETHUSDT"):
        evaluate_portfolio(pf, pool(), _params())


@pytest.mark.parametrize("mark", ["NaN", -40000])
def test_portfolio_file_with_bad_price_raises_nan_price_error_naming_symbol(
    tmp_path: Path, mark: object
) -> None:
    data = json.loads(EXAMPLE.read_text())
    for p in data["prices"]:
        if p["symbol"] == "BTCUSDT":
            p["mark"] = mark
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    with pytest.raises(NaNPriceError, match="BTCUSDT"):
        load_portfolio_file(f).to_portfolio()


@pytest.mark.parametrize(("symbol", "message"), [("BTCUSDT", "linear_perp mark"), ("BTC", "asset")])
def test_zero_mark_of_a_future_or_an_asset_is_refused_naming_the_symbol(
    tmp_path: Path, symbol: str, message: str
) -> None:
    # 0 is a valid option price, so the file loads; margin refuses it where a future or an
    # asset needs it, naming the symbol (no partial report).
    data = json.loads(EXAMPLE.read_text())
    for p in data["prices"]:
        if p["symbol"] == symbol:
            p["mark"] = 0
    f = tmp_path / "zero.json"
    f.write_text(json.dumps(data))
    loaded = load_portfolio_file(f)
    with pytest.raises(DataError, match=f"{message}.*{symbol}"):
        evaluate_portfolio(loaded.to_portfolio(), loaded.pool_spec(), loaded.params)


def test_option_with_zero_mark_is_valued_at_zero_and_the_pool_still_reports() -> None:
    # A far out-of-the-money call quoted at exactly 0 (as venues quote it) next to a perp.
    far_call = option(300_000, "call", days=10, symbol="BTC-300000-C")
    pf = portfolio(
        [bal("USDT", 1_000_000, "options")],
        [pos(far_call, -20, 5, "options"), pos(linear(), 2, 95_000, "options")],
        [
            px("BTC", 95_000),
            px("USDT", 1),
            px("BTCUSDT", 95_000),
            px("BTC-300000-C", 0, iv="0.6", index=95_000),
        ],
    )
    params = _params()
    for model in ("scenario", "standard"):
        r = evaluate_portfolio(pf, pool(("options",), model), params)
        by_key = {c.key: c for c in r.contributions}
        assert by_key["v/options/BTC-300000-C"].value_usd == 0  # −20 × 0
        assert r.equity_usd == 1_000_000  # cash + perp PnL 0 + option value 0
    # Bybit short-call MM at mark 0: max(3 % × S, 0) + 0 + 0.2 % × S per coin, 20 coins
    std = evaluate_portfolio(pf, pool(("options",), "standard"), params)
    option_mm = next(c.mm_usd for c in std.contributions if c.key == "v/options/BTC-300000-C")
    assert option_mm == 20 * (D("0.03") + D("0.002")) * 95_000


def test_portfolio_file_with_unknown_instrument_names_it(tmp_path: Path) -> None:
    data = json.loads(EXAMPLE.read_text())
    data["positions"].append({"wallet": "um", "symbol": "XRPUSDT", "qty": "1", "entry_price": "1"})
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    with pytest.raises(UnknownAssetError, match="XRPUSDT"):
        load_portfolio_file(f).to_portfolio()


def test_portfolio_file_with_bad_params_names_the_key_path(tmp_path: Path) -> None:
    data = json.loads(EXAMPLE.read_text())
    data["params"]["loan_leverage"] = 7
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"params\.loan_leverage"):
        load_portfolio_file(f)
