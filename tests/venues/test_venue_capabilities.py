"""Capabilities as data (STYLE rule 5): every swap and route of a desk is checked against what its
venue can do when the desk is loaded, and each impossible entry is named."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.config import DeskConfig, parse_desk
from core.domain import Asset, WalletKind
from core.errors import ConfigError, TransferNotAllowed
from core.venues.capabilities import BINANCE, ConversionMethod, desk_capability_problems
from core.venues.factory import DeskVenues
from core.venues.wallets import binance_transfer_type
from flows.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
W = WalletKind


def _desk_data() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text())


def _route(**fields: object) -> dict[str, object]:
    return {"kind": "internal", "venue": "sim-a", "asset": "USDT", "latency_s": 1.0, **fields}


def test_example_desk_with_margin_order_swap_has_no_capability_problem(desk: DeskConfig) -> None:
    assert list(desk_capability_problems(desk)) == []
    doge = next(s for s in desk.swaps if s.id == "a.margin.doge-usdt")
    assert (doge.wallet, doge.method) == (W.MARGIN, ConversionMethod.MARGIN_ORDER)


def test_desk_with_convert_in_margin_wallet_is_refused_naming_the_swap() -> None:
    data = _desk_data()
    data["swaps"][0]["method"] = "convert"  # the example desk's old, impossible shape
    with pytest.raises(ConfigError) as info:
        parse_desk(data, source="desk.toml")
    assert (
        "swaps[0] (a.margin.doge-usdt): Binance Convert works from spot or funding only, "
        'not margin; in margin use method = "margin_order" (a Binance margin order)'
    ) in str(info.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"id": "x.spot.doge", "wallet": "spot", "method": "margin_order"},
            "swaps[2] (x.spot.doge): a Binance margin order works from margin only, not spot; "
            'in spot use method = "convert" (Binance Convert)',
        ),
        (
            {"id": "x.um.doge", "wallet": "um", "method": "convert"},
            "swaps[2] (x.um.doge): Binance Convert works from spot or funding only, not um",
        ),
    ],
)
def test_desk_with_swap_in_unsupported_wallet_is_refused(
    entry: dict[str, object], problem: str
) -> None:
    data = _desk_data()
    swap = {
        "venue": "sim-a",
        "from_asset": "DOGE",
        "to_asset": "USDT",
        "latency_s": 1.0,
        "levels": [{"width_usd": 1000, "cost_bps": 5}],
        **entry,
    }
    data["swaps"].append(swap)
    with pytest.raises(ConfigError) as info:
        parse_desk(data)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        (
            _route(id="x.sub", kind="sub_account", from_wallet="spot", to_wallet="margin"),
            "sub_account routes are not supported on Binance by the adapter",
        ),
        (
            _route(id="x.um-cm", from_wallet="um", to_wallet="cm"),
            "Binance has no direct transfer from um to cm; route it through spot",
        ),
        (
            _route(id="x.spot-pm", venue="sim-b", from_wallet="spot", to_wallet="pm"),
            "the pm wallet exists only on a Portfolio Margin account",
        ),
        (
            _route(
                id="x.chain-out",
                kind="onchain",
                from_wallet="um",
                to_venue="sim-b",
                to_wallet="spot",
            ),
            "Binance withdrawals leave from spot only, not um; add an internal route to it first",
        ),
        (
            _route(
                id="x.chain-in",
                kind="onchain",
                from_wallet="spot",
                to_venue="sim-b",
                to_wallet="um",
            ),
            "Binance credits deposits to spot, not um; add an internal route from it",
        ),
    ],
)
def test_desk_with_route_the_venue_cannot_do_is_refused_naming_it(
    route: dict[str, object], problem: str
) -> None:
    data = _desk_data()
    n = len(data["routes"])
    data["routes"].append(route)
    with pytest.raises(ConfigError) as info:
        parse_desk(data)
    assert f"routes[{n}] ({route['id']}): {problem}" in str(info.value)


def test_desk_with_several_impossible_entries_names_every_one() -> None:
    data = _desk_data()
    data["swaps"][0]["method"] = "convert"
    data["routes"].append(_route(id="x.um-cm", from_wallet="um", to_wallet="cm"))
    with pytest.raises(ConfigError) as info:
        parse_desk(data)
    text = str(info.value)
    assert "swaps[0] (a.margin.doge-usdt)" in text
    assert "(x.um-cm): Binance has no direct transfer from um to cm" in text


def test_config_check_cli_with_impossible_swap_exits_2_with_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "desk.toml"
    bad.write_text(EXAMPLE.read_text().replace('method = "margin_order"', 'method = "convert"'))
    result = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    assert "swaps[0] (a.margin.doge-usdt): Binance Convert works from spot or funding" in (
        result.output.replace("\n", " ").replace("  ", " ")
    )
    assert "Traceback" not in result.output


def test_venue_capabilities_with_example_desk_come_from_the_same_record(
    sims: DeskVenues,
) -> None:
    a, b = sims.venues["sim-a"], sims.venues["sim-b"]
    caps = a.capabilities
    assert caps.conversion_wallets == {
        "convert": frozenset({W.SPOT, W.FUNDING}),
        "margin_order": frozenset({W.MARGIN}),
    }
    assert caps.route_kinds == BINANCE.route_kinds == frozenset({"internal", "onchain"})
    assert caps.portfolio_margin
    assert W.PM in caps.wallets
    assert not b.capabilities.portfolio_margin
    assert W.PM not in b.capabilities.wallets


def test_convert_quote_with_margin_wallet_is_refused_before_any_request(
    sims: DeskVenues,
) -> None:
    a = sims.venues["sim-a"]
    a.load_markets()
    with pytest.raises(TransferNotAllowed, match="Binance Convert works from spot or funding"):
        a.convert_quote(Asset("DOGE"), Asset("USDT"), Decimal(1000), W.MARGIN)
    assert ("POST", "/sapi/v1/convert/getQuote") not in sims.dialects["sim-a"].request_log


@pytest.mark.parametrize("src", list(W))
@pytest.mark.parametrize("dst", list(W))
def test_internal_route_verdict_with_any_wallet_pair_agrees_with_the_adapter_mapping(
    src: WalletKind, dst: WalletKind
) -> None:
    """The config check accepts exactly the pairs the adapter can send (on a PM account)."""
    verdict = BINANCE.route_problem("internal", src, dst, portfolio_margin=True)
    try:
        binance_transfer_type(src, dst)
        sendable = True
    except TransferNotAllowed:
        sendable = False
    assert (verdict is None) is sendable
