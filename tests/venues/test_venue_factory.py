"""Desk config → venues: simulated venues seeded from the config, live ones with credentials from
the environment or an injected Secret-block resolver, and never a request to binance.com."""

from __future__ import annotations

import json
import socket
from decimal import Decimal
from typing import Any

import pytest

from core.clock import ManualClock
from core.config import DeskConfig, VenueCfg
from core.domain import WalletKind
from core.errors import ConfigError
from core.venues.base import Venue
from core.venues.factory import DeskVenues, live_venue


def test_build_with_example_desk_seeds_balances_and_positions(sims: DeskVenues) -> None:
    a, b = sims.venues["sim-a"], sims.venues["sim-b"]
    assert isinstance(a, Venue)
    assert a.portfolio_margin
    assert not b.portfolio_margin
    margin = {x.asset.code: x for x in a.balances(WalletKind.MARGIN)}
    assert margin["USDT"].amount == Decimal(1_300_000)
    assert margin["USDT"].loan == Decimal(500_000)
    assert margin["USDT"].interest == Decimal("182.35")
    options = {x.asset.code: x.amount for x in b.balances(WalletKind.OPTIONS)}
    assert options == {"USDT": Decimal(2_200_000)}
    um_b = {p.symbol: p.qty for p in b.positions(WalletKind.UM)}
    assert um_b == {"BTCUSDT": Decimal(60), "ETHUSDT": Decimal(-1500)}
    cm_a = a.positions(WalletKind.CM)
    assert [(p.symbol, p.qty, p.margin_asset.code) for p in cm_a] == [
        ("BTCUSD_PERP", Decimal(60_000), "BTC")
    ]
    # Inverse PnL = contracts × face × (1/entry − 1/mark) = 60000 × 100 × (1/91800 − 1/95020)
    expected = Decimal(60_000) * 100 * (1 / Decimal(91_800) - 1 / Decimal(95_020))
    assert abs(cm_a[0].unrealized_pnl - expected) < Decimal("1e-8")


def test_balances_with_cm_wallet_reads_coin_margined_not_spot(sims: DeskVenues) -> None:
    """COIN-M needs subType='inverse'; type='delivery' would silently return spot."""
    b = sims.venues["sim-b"]
    b.balances(WalletKind.CM)
    assert ("GET", "/dapi/v1/account") in b.request_log
    b.exchange.fetch_balance({"type": "delivery"})
    assert b.request_log[-1] == ("GET", "/api/v3/account")


def _live_cfg(**creds: str) -> VenueCfg:
    return VenueCfg.model_validate({"name": "binance-main", "kind": "ccxt", "credentials": creds})


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_live_venue_with_env_credentials_builds_without_any_request(no_network: None) -> None:
    cfg = _live_cfg(api_key_env="PMR_K", secret_env="PMR_S")
    venue = live_venue(cfg, ManualClock(), {"USDT": 8}, env={"PMR_K": "key", "PMR_S": "sec"})
    assert venue.exchange.apiKey == "key"
    assert venue.http_requests == 0
    assert venue.exchange.options["maxRetriesOnFailure"] == 0
    assert venue.exchange.enableRateLimit is False
    venue.check_capabilities()
    assert "binance.com" in venue.exchange.urls["api"]["sapi"]  # live means live


def test_live_venue_with_missing_env_raises_config_error_naming_variables() -> None:
    cfg = _live_cfg(api_key_env="PMR_K", secret_env="PMR_S")
    with pytest.raises(ConfigError, match="not set") as info:
        live_venue(cfg, ManualClock(), {}, env={"PMR_K": "key"})
    assert info.value.context["missing"] == ["PMR_S"]
    assert "key" not in str(info.value.context)


def test_live_venue_with_secret_block_uses_injected_resolver(no_network: None) -> None:
    asked: list[str] = []

    def resolver(name: str) -> str:
        asked.append(name)
        return json.dumps({"api_key": "blk-key", "secret": "blk-secret"})

    cfg = _live_cfg(secret_block="binance-main-keys")
    venue = live_venue(cfg, ManualClock(), {}, resolver=resolver)
    assert asked == ["binance-main-keys"]
    assert venue.exchange.secret == "blk-secret"


@pytest.mark.parametrize("value", ["not json", '{"api_key": "k"}', "[]"])
def test_live_venue_with_malformed_secret_block_raises_without_echoing_it(value: str) -> None:
    cfg = _live_cfg(secret_block="keys")
    with pytest.raises(ConfigError, match="Secret block value must be JSON") as info:
        live_venue(cfg, ManualClock(), {}, resolver=lambda _: value)
    assert value not in str(info.value)


def test_live_venue_with_secret_block_and_no_resolver_raises() -> None:
    with pytest.raises(ConfigError, match="no resolver"):
        live_venue(_live_cfg(secret_block="keys"), ManualClock(), {})


def test_core_venues_never_imports_prefect() -> None:
    import subprocess
    import sys

    code = (
        "import sys, core.venues.factory, core.venues.ccxt_venue, core.venues.sim.server;"
        "print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_desk_venues_share_one_network(desk: DeskConfig, sims: DeskVenues) -> None:
    assert sims.network is not None
    assert {e.name for e in sims.network.venues()} == {"sim-a", "sim-b"}
    assert sims.skipped == []  # every position of the example desk is simulated (options too)


def test_funding_rates_with_um_and_cm_come_from_premium_index(sims: DeskVenues) -> None:
    a = sims.venues["sim-a"]
    assert a.funding_rates(WalletKind.UM) == {
        "BTCUSDT": Decimal("0.0001"),
        "ETHUSDT": Decimal("0.0001"),
        "SOLUSDT": Decimal("0.0001"),
    }
    assert set(a.funding_rates(WalletKind.CM)) == {"BTCUSD_PERP", "ETHUSD_PERP"}


def test_positions_to_domain_with_desk_instruments_matches_config(
    desk: DeskConfig, sims: DeskVenues
) -> None:
    from core.errors import UnknownAssetError
    from core.venues.parse import positions_to_domain

    a = sims.venues["sim-a"]
    reports = a.positions(WalletKind.UM) + a.positions(WalletKind.CM)
    got = positions_to_domain(reports, desk.instrument_map())
    expected = [p for p in desk.initial_positions() if p.venue == "sim-a"]
    assert sorted(got, key=lambda p: p.instrument.symbol) == sorted(
        expected, key=lambda p: p.instrument.symbol
    )
    with pytest.raises(UnknownAssetError, match="undeclared instrument"):
        positions_to_domain(reports, {})
