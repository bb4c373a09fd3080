"""Desk config: the example validates; every kind of bad input names file, key path and reason."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import DeskConfig, key_path, load_desk, parse_desk
from core.domain import MarginModelKind, WalletKind
from core.errors import ConfigError
from core.margin.params import CollateralRate, Thresholds

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"


@pytest.fixture(scope="module")
def example_data() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text())


def _broken(data: dict[str, Any], mutate: Any) -> str:
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        parse_desk(bad, source="desk.toml")
    return str(err.value)


def test_example_desk_with_two_sim_venues_loads_every_section() -> None:
    desk = load_desk(EXAMPLE)
    assert [v.name for v in desk.venues] == ["sim-a", "sim-b"]
    assert {p.id: p.model for p in desk.pools} == {
        "sim-a.pm": MarginModelKind.UNIFIED,
        "sim-b.um": MarginModelKind.STANDARD,
        "sim-b.opt": MarginModelKind.SCENARIO,
    }
    assert desk.pool("sim-a.pm").wallets == (WalletKind.MARGIN, WalletKind.UM, WalletKind.CM)
    assert desk.pool_of("sim-a", WalletKind.UM) is not None
    assert desk.pool_of("sim-a", WalletKind.SPOT) is None
    # cum derived for continuity: 300k*(0.005-0.004) + 3M*(0.01-0.005) = 300 + 15,000
    assert desk.brackets["BTCUSDT"][2].cum_usd == Decimal("15300")
    assert desk.collateral_rate("sim-a.pm", "DOGE").rate == Decimal("0.5")
    assert desk.collateral_rate("sim-a.pm", "XRP").rate == 0  # undeclared: not collateral
    assert desk.scenario_params("ETH").price_range_frac == 0.18
    assert len(desk.initial_positions()) == 9
    assert sum(1 for i in desk.instrument_map().values() if i.is_option) == 3


def test_load_desk_with_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found \(file=.*nope.toml\)"):
        load_desk(tmp_path / "nope.toml")


def test_load_desk_with_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "desk.toml"
    f.write_text('[desk]\nname = "x"\nmax_price_age_s = = 3\n')
    with pytest.raises(ConfigError, match=r"malformed TOML: .*line 3"):
        load_desk(f)


def test_route_with_unknown_asset_names_the_route(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["routes"][2].update(asset="XRP"))
    assert "routes[2].asset: unknown asset 'XRP'" in msg
    assert "file=desk.toml" in msg


def test_preauth_with_negative_cap_names_the_key(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["preauth"][1].update(per_transfer_usd=-5))
    assert "preauth[1].per_transfer_usd: Input should be greater than 0" in msg


@pytest.mark.parametrize(
    ("tiers", "reason"),
    [
        ([{"from_usd": 0, "to_usd": 10, "rate": 1}, {"from_usd": 12, "rate": 0.9}], "gap"),
        ([{"from_usd": 0, "to_usd": 10, "rate": 1}, {"from_usd": 8, "rate": 0.9}], "overlaps"),
        ([{"from_usd": 5, "to_usd": 10, "rate": 1}], "must start at 0"),
        ([{"from_usd": 0, "rate": 1}, {"from_usd": 10, "rate": 0.9}], "not the last tier"),
    ],
)
def test_collateral_tiers_with_gaps_or_overlaps_raise(
    example_data: dict[str, Any], tiers: list[dict[str, Any]], reason: str
) -> None:
    msg = _broken(example_data, lambda d: d["collateral_rates"].update(BTC={"tiers": tiers}))
    assert "collateral_rates.BTC" in msg
    assert reason in msg


def test_pool_with_unknown_margin_model_lists_the_known_ones(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["pools"][0].update(model="span2"))
    assert "pools[0].model: Input should be 'unified', 'scenario' or 'standard'" in msg


def test_duplicated_venue_names_raise(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["venues"][1].update(name="sim-a"))
    assert "venues[1].name: duplicated name 'sim-a'" in msg


def test_inline_credentials_are_refused(example_data: dict[str, Any]) -> None:
    live = {"name": "live", "kind": "ccxt", "credentials": {"secret": "hunter2"}}
    msg = _broken(example_data, lambda d: d["venues"].append(live))
    assert "venues[2]" in msg
    assert "inline credential" in msg
    assert "hunter2" not in msg


def test_live_venue_with_env_references_is_accepted(example_data: dict[str, Any]) -> None:
    data = copy.deepcopy(example_data)
    creds = {"api_key_env": "PMR_KEY", "secret_env": "PMR_SECRET"}
    data["venues"].append({"name": "live", "kind": "ccxt", "credentials": creds})
    desk = parse_desk(data)
    assert desk.venue("live").credentials is not None
    assert "PMR_KEY" in str(desk.redacted())


def test_unknown_key_is_an_error_not_ignored(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["pools"][1].update(treshold=1))
    assert "pools[1].treshold: Extra inputs are not permitted" in msg


def test_wallet_in_two_pools_raises(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["pools"][2].update(wallets=["um"]))
    assert "sim-b/um already belongs to pool 'sim-b.um'" in msg


def test_onchain_route_on_one_venue_raises(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["routes"][7].update(to_venue="sim-a"))
    assert "routes[7]: an onchain route must go to another venue" in msg


def test_swap_with_falling_cost_levels_raises(example_data: dict[str, Any]) -> None:
    levels = [{"width_usd": 10, "cost_bps": 5}, {"width_usd": 10, "cost_bps": 1}]
    msg = _broken(example_data, lambda d: d["swaps"][0].update(levels=levels))
    assert "swaps[0]: levels must have non-decreasing cost_bps" in msg


def test_bracket_table_with_wrong_cum_raises(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["brackets"]["BTCUSDT"][1].update(cum_usd=999))
    assert "brackets.BTCUSDT: bracket 1: cum_usd 999 should be 300" in msg


def test_desk_config_is_frozen() -> None:
    desk = load_desk(EXAMPLE)
    with pytest.raises(Exception, match="frozen"):
        desk.desk.max_price_age_s = 5  # type: ignore[misc]


# -- property tests: validation invariants ----------------------------------------------------

widths = st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=6)
rates = st.decimals(min_value=0, max_value=1, places=4)


@given(widths, st.data())
def test_contiguous_tier_tables_are_accepted(ws: list[int], data: st.DataObject) -> None:
    edges = [0]
    for w in ws:
        edges.append(edges[-1] + w)
    tiers = [
        {"from_usd": edges[i], "to_usd": edges[i + 1], "rate": data.draw(rates)}
        for i in range(len(ws))
    ]
    tiers[-1].pop("to_usd")
    rate = CollateralRate.model_validate({"tiers": tiers})
    assert rate.tiers is not None
    assert len(rate.tiers) == len(ws)


@given(widths.filter(lambda w: len(w) >= 2), st.data())
def test_tier_tables_with_any_gap_or_overlap_are_refused(
    ws: list[int], data: st.DataObject
) -> None:
    edges = [0]
    for w in ws:
        edges.append(edges[-1] + w)
    tiers: list[dict[str, Any]] = [
        {"from_usd": edges[i], "to_usd": edges[i + 1], "rate": 1} for i in range(len(ws))
    ]
    i = data.draw(st.integers(min_value=1, max_value=len(ws) - 1))
    shift = data.draw(st.integers(min_value=1, max_value=ws[i] - 1) if ws[i] > 1 else st.just(-1))
    sign = data.draw(st.sampled_from([-1, 1]))
    new_from = tiers[i]["from_usd"] + sign * shift
    if new_from < 0 or new_from >= tiers[i]["to_usd"]:
        new_from = tiers[i]["from_usd"] + 1 if ws[i] > 1 else tiers[i]["from_usd"] - 1
    if new_from < 0:
        return
    tiers[i]["from_usd"] = new_from
    with pytest.raises(ValueError, match=r"gap|overlaps|to_usd"):
        CollateralRate.model_validate({"tiers": tiers})


levels = st.floats(min_value=0.5, max_value=3.0, allow_nan=False)


@given(levels, levels, levels, levels)
def test_thresholds_accept_exactly_the_ordered_ones(
    w: float, c: float, r: float, lq: float
) -> None:
    ordered = w >= c >= r >= lq
    args = {"warn": w, "call": c, "reduce_only": r, "liquidation": lq, "target": max(w, c)}
    if ordered:
        t = Thresholds.model_validate(args)
        assert t.call == c
    else:
        with pytest.raises(ValueError, match="warn >= call >= reduce_only >= liquidation"):
            Thresholds.model_validate(args)


@given(st.sampled_from(["api_key", "apiKey", "secret", "password", "token", "private_key"]))
def test_any_inline_secret_key_is_refused(key: str) -> None:
    base = tomllib.loads(EXAMPLE.read_text())
    base["venues"].append({"name": "live", "kind": "ccxt", key: "x"})
    with pytest.raises(ConfigError, match="inline credential"):
        parse_desk(base)


def test_parse_desk_returns_desk_config(example_data: dict[str, Any]) -> None:
    assert isinstance(parse_desk(example_data), DeskConfig)


def test_scenario_params_without_desk_entry_fall_back_to_venue_defaults(
    example_data: dict[str, Any],
) -> None:
    data = copy.deepcopy(example_data)
    data.pop("scenario")
    desk = parse_desk(data)
    assert desk.scenario_params("ETH").price_range_frac == 0.18  # Deribit ETH
    assert desk.scenario_params("BTC").price_range_frac == 0.16
    assert desk.scenario_params("SOL").price_range_frac == 0.16  # generic default


def test_load_desk_with_non_utf8_bytes_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "desk.toml"
    f.write_bytes(b"\xff\xfe[desk]\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0\)"):
        load_desk(f)


def test_initial_portfolio_holds_the_declared_state_stamped_at() -> None:
    from datetime import UTC, datetime

    desk = load_desk(EXAMPLE)
    at = datetime(2026, 11, 27, 12, tzinfo=UTC)
    pf = desk.initial_portfolio(at)
    assert pf.as_of == at
    assert len(pf.balances) == len(desk.balances)
    assert len(pf.positions) == len(desk.positions)
    assert pf.prices["BTC"].mark == Decimal(95_000)
    assert pf.prices["BTC"].at == at


# -- the declared starting state must be priceable, at load -----------------------------------


def _drop_price(data: dict[str, Any], symbol: str) -> None:
    data["prices"] = [p for p in data["prices"] if p["symbol"] != symbol]


def test_position_without_mark_names_the_position_key_path(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: _drop_price(d, "ETHUSDT"))
    # both ETHUSDT positions (sim-a and sim-b) are named, nothing else
    assert "positions[1].symbol: no mark for 'ETHUSDT' (add it under [[prices]])" in msg
    assert "positions[5].symbol: no mark for 'ETHUSDT'" in msg
    assert msg.count("no mark") == 2


def test_position_whose_underlying_has_no_usd_price_is_refused(
    example_data: dict[str, Any],
) -> None:
    msg = _broken(example_data, lambda d: _drop_price(d, "SOL"))
    assert "positions[2].symbol: position in 'SOLUSDT' needs a USD price for 'SOL'" in msg


def test_held_option_without_iv_names_its_price_entry(example_data: dict[str, Any]) -> None:
    msg = _broken(example_data, lambda d: d["prices"][12].pop("iv"))
    assert "prices[12].iv: option 'BTC-270326-80000-P' is held (positions[7].symbol)" in msg


def test_balance_without_price_names_every_balance_of_the_asset(
    example_data: dict[str, Any],
) -> None:
    msg = _broken(example_data, lambda d: _drop_price(d, "USDC"))
    assert "balances[3].asset: balance needs a USD price for 'USDC'" in msg
    assert "balances[8].asset: balance needs a USD price for 'USDC'" in msg


def test_pool_margin_currency_without_price_is_refused_when_state_is_declared(
    example_data: dict[str, Any],
) -> None:
    def swap_currency(d: dict[str, Any]) -> None:
        d["assets"]["FDUSD"] = {"kind": "stablecoin"}
        d["pools"][1]["margin_currency"] = "FDUSD"

    msg = _broken(example_data, swap_currency)
    assert "pools[1].margin_currency: pool 'sim-b.um' needs a USD price for 'FDUSD'" in msg


def test_desk_without_starting_state_needs_no_prices(example_data: dict[str, Any]) -> None:
    data = copy.deepcopy(example_data)
    for section in ("balances", "positions", "prices"):
        data.pop(section)
    assert parse_desk(data).prices == ()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("balances", 0, "amount"), 10**18),
        (("positions", 0, "qty"), -(10**18)),
        (("prices", 0, "mark"), "1e18"),
        (("preauth", 0, "per_transfer_usd"), 10**19),
    ],
)
def test_amount_at_the_money_size_limit_is_refused_naming_the_key(
    example_data: dict[str, Any], path: tuple[str, int, str], value: object
) -> None:
    section, i, key = path
    msg = _broken(example_data, lambda d: d[section][i].update({key: value}))
    assert f"{section}[{i}].{key}: Input should be " in msg
    assert "1000000000000000000" in msg


def test_amount_just_below_the_money_size_limit_loads(example_data: dict[str, Any]) -> None:
    data = copy.deepcopy(example_data)
    data["balances"][0]["amount"] = "999999999999999999.99"
    assert parse_desk(data).balances[0].amount == Decimal("999999999999999999.99")


# -- the state at an instant ------------------------------------------------------------------


def test_check_state_at_with_options_past_expiry_names_each_position() -> None:
    desk = load_desk(EXAMPLE)
    after_march = datetime(2027, 4, 1, tzinfo=UTC)
    with pytest.raises(ConfigError) as err:
        desk.check_state_at(after_march)
    msg = str(err.value)
    assert "positions[6].symbol: option 'BTC-270326-100000-C' expired at 2027-03-26T08" in msg
    assert "positions[7].symbol: option 'BTC-270326-80000-P' expired" in msg
    assert "positions[8]" not in msg  # the ETH option runs to June
    assert f"file={EXAMPLE}" in msg


def test_check_state_at_the_expiry_instant_refuses_and_a_second_before_accepts() -> None:
    desk = load_desk(EXAMPLE)
    expiry = datetime(2027, 3, 26, 8, tzinfo=UTC)
    with pytest.raises(ConfigError, match=r"positions\[6\]"):
        desk.check_state_at(expiry)
    desk.check_state_at(expiry - timedelta(seconds=1))


def test_initial_portfolio_after_expiry_is_refused_like_check_state_at() -> None:
    desk = load_desk(EXAMPLE)
    with pytest.raises(ConfigError, match=r"positions\[6\]\.symbol: option .* expired"):
        desk.initial_portfolio(datetime(2027, 4, 1, tzinfo=UTC))


def test_check_state_at_a_naive_instant_is_refused() -> None:
    with pytest.raises(ConfigError, match="timezone"):
        load_desk(EXAMPLE).check_state_at(datetime(2026, 11, 27))


def test_expired_future_position_is_refused(example_data: dict[str, Any]) -> None:
    data = copy.deepcopy(example_data)
    data["instruments"][3]["kind"] = "inverse_future"
    data["instruments"][3]["expiry"] = datetime(2026, 12, 26, 8, tzinfo=UTC)
    desk = parse_desk(data, source="desk.toml")
    with pytest.raises(ConfigError, match=r"positions\[3\]\.symbol: future 'BTCUSD_PERP' expired"):
        desk.check_state_at(datetime(2027, 1, 1, tzinfo=UTC))


# -- one key-path style ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("routes", 2, "asset"), "routes[2].asset"),
        (("collateral_rates", "BTC", "tiers", 0, "rate"), "collateral_rates.BTC.tiers[0].rate"),
        (("brackets", "BTCUSDT", 1), "brackets.BTCUSDT[1]"),
        ((), "<root>"),
    ],
)
def test_key_path_puts_indexes_in_brackets_and_keys_after_dots(
    loc: tuple[int | str, ...], path: str
) -> None:
    assert key_path(loc) == path


def test_load_desk_with_a_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"desk config path is a directory.*file="):
        load_desk(tmp_path)


def test_example_desk_calls_at_or_above_each_venue_margin_call_level() -> None:
    desk = load_desk(EXAMPLE)
    for p in desk.pools:
        assert p.thresholds.call >= p.venue_levels.margin_call, p.id
    assert desk.warnings() == ()


def test_pool_calling_below_its_venue_margin_call_level_is_a_warning_not_an_error(
    example_data: dict[str, Any],
) -> None:
    data = copy.deepcopy(example_data)
    data["pools"][1]["thresholds"] = {"warn": 1.5, "call": 1.2, "reduce_only": 1.05,
                                      "liquidation": 1.0, "target": 1.5}  # fmt: skip
    data["pools"][2]["venue_levels"] = {"margin_call": 1.7, "reduce_only": 1.3,
                                        "liquidation": 1.1, "bankrupt": 1.0}  # fmt: skip
    desk = parse_desk(data)
    assert desk.warnings() == (
        "pools[1] sim-b.um: thresholds.call 1.2 is below the venue's margin-call level 1.5; "
        "the venue restricts the account before the desk calls",
        "pools[2] sim-b.opt: thresholds.call 1.6 is below the venue's margin-call level 1.7; "
        "the venue restricts the account before the desk calls",
    )


def test_venue_levels_out_of_order_name_the_pool(example_data: dict[str, Any]) -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["pools"][0]["venue_levels"] = {"margin_call": 1.1, "reduce_only": 1.2}

    msg = _broken(example_data, mutate)
    assert "pools[0].venue_levels" in msg
    assert "margin_call >= reduce_only" in msg


def test_negative_balance_is_accepted_in_a_futures_wallet_and_refused_in_spot(
    example_data: dict[str, Any],
) -> None:
    data = copy.deepcopy(example_data)
    i_um = next(i for i, b in enumerate(data["balances"]) if b["wallet"] == "um")
    data["balances"][i_um]["amount"] = "-8000"
    b = parse_desk(data).initial_balances()[i_um]
    assert (b.wallet, b.amount, b.loan) == (WalletKind.UM, Decimal(-8000), 0)

    def spot_negative(d: dict[str, Any]) -> None:
        i = next(i for i, b in enumerate(d["balances"]) if b["wallet"] == "spot")
        d["balances"][i]["amount"] = "-1"

    msg = _broken(example_data, spot_negative)
    assert "negative in a spot wallet" in msg
    assert "book what is borrowed as 'loan'" in msg


def test_hedge_mode_legs_in_config_become_two_positions_and_a_third_is_a_duplicate(
    example_data: dict[str, Any],
) -> None:
    data = copy.deepcopy(example_data)
    legs = [
        {"venue": "sim-b", "wallet": "um", "symbol": "SOLUSDT", "qty": "10",
         "entry_price": "170", "side": "long"},
        {"venue": "sim-b", "wallet": "um", "symbol": "SOLUSDT", "qty": "-4",
         "entry_price": "175", "side": "short"},
    ]  # fmt: skip
    data["positions"] = [*data["positions"], *legs]
    keys = [p.key for p in parse_desk(data).initial_positions()][-2:]
    assert keys == ["sim-b/um/SOLUSDT:long", "sim-b/um/SOLUSDT:short"]
    data["positions"].append(dict(legs[0]))
    with pytest.raises(ConfigError, match=r"positions\[11\].*duplicated.*SOLUSDT/long"):
        parse_desk(data)


def test_zero_mark_is_accepted_in_the_price_list(example_data: dict[str, Any]) -> None:
    data = copy.deepcopy(example_data)
    i = next(i for i, p in enumerate(data["prices"]) if p["symbol"] == "ETH-270625-3500-C")
    data["prices"][i]["mark"] = 0
    desk = parse_desk(data)
    assert desk.prices[i].mark == 0


# ---------------------------------------------------------------- pre-authorisation fields


def test_example_desk_declares_venue_caps_a_cold_route_and_its_addresses() -> None:
    desk = load_desk(EXAMPLE)
    assert desk.preauth_venues == {"sim-a": Decimal(8_000_000), "sim-b": Decimal(6_000_000)}
    cold = [(r.id, r.cold_quota_usd_per_day) for r in desk.routes if r.cold]
    assert cold == [("ba.onchain.usdt", Decimal(1_000_000))]
    onchain = {r.id: r.withdraw_address for r in desk.routes if r.kind == "onchain"}
    assert onchain == {"ab.onchain.usdt": "sim-b.usdt.trx", "ba.onchain.usdt": "sim-a.usdt.trx"}
    address = desk.withdraw_address("sim-b.usdt.trx")
    assert address is not None
    assert (address.venue, address.asset, address.network) == ("sim-b", "USDT", "TRX")
    assert desk.preauth_for("ab.onchain.usdt") is not None
    assert desk.route("a.margin.doge-usdt") is None
    assert desk.swap("a.margin.doge-usdt") is not None


@pytest.mark.parametrize(
    ("mutate", "line"),
    [
        (
            lambda d: d["routes"][0].update(cold=True, cold_quota_usd_per_day=1000),
            "routes[0].cold: only an onchain route can be cold (an on-chain withdrawal from a "
            "cold or custodial wallet); 'a.spot-margin.usdt' is internal",
        ),
        (
            lambda d: d["routes"][7].update(cold=True),
            "routes[7].cold_quota_usd_per_day: a cold route needs its pre-approved daily quota",
        ),
        (
            lambda d: d["routes"][8].update(cold=False),
            "routes[8].cold_quota_usd_per_day: set on a route that is not cold (add cold = true)",
        ),
        (
            lambda d: d["routes"][8].update(cold_quota_usd_per_day=0),
            "routes[8].cold_quota_usd_per_day: Input should be greater than 0",
        ),
        (
            lambda d: d["routes"][7].pop("withdraw_address"),
            "routes[7].withdraw_address: an onchain route must name an allow-listed address "
            "(the label of a [[withdraw_addresses]] entry)",
        ),
        (
            lambda d: d["routes"][7].update(withdraw_address="sim-b.usdt.eth"),
            "routes[7].withdraw_address: unknown address 'sim-b.usdt.eth' (declare it under "
            "[[withdraw_addresses]])",
        ),
        (
            lambda d: d["routes"][7].update(withdraw_address="sim-a.usdt.trx"),
            "routes[7].withdraw_address: 'sim-a.usdt.trx' receives USDT on sim-a; the route "
            "moves USDT to sim-b",
        ),
        (
            lambda d: d["routes"][1].update(withdraw_address="sim-a.usdt.trx"),
            "routes[1].withdraw_address: only an onchain route sends to an address",
        ),
        (
            lambda d: d["withdraw_addresses"][1].update(label="sim-b.usdt.trx"),
            "withdraw_addresses[1].label: duplicated label 'sim-b.usdt.trx'",
        ),
        (
            lambda d: d["withdraw_addresses"][0].update(venue="sim-c"),
            "withdraw_addresses[0].venue: unknown venue 'sim-c'",
        ),
        (
            lambda d: d["withdraw_addresses"][0].update(network="trx"),
            "withdraw_addresses[0].network: String should match pattern",
        ),
        (
            lambda d: d["withdraw_addresses"][0].update(address="0x 1"),
            "withdraw_addresses[0].address: String should match pattern",
        ),
        (
            lambda d: d["preauth_venues"].update({"sim-c": 1}),
            "preauth_venues.sim-c: unknown venue 'sim-c'",
        ),
        (
            lambda d: d["preauth_venues"].update({"sim-a": -1}),
            "preauth_venues.sim-a: Input should be greater than 0",
        ),
    ],
)
def test_preauth_custody_fields_with_bad_values_name_the_key_path(
    example_data: dict[str, Any], mutate: Any, line: str
) -> None:
    assert line in _broken(example_data, mutate)
