"""Wallet mapping: explicit Binance types both ways, and why we never hand ccxt account names."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.domain import Asset, WalletKind
from core.errors import DataError, TransferNotAllowed, VenueRejected
from core.venues.factory import DeskVenues
from core.venues.wallets import (
    BINANCE_TRANSFER_TYPES,
    binance_transfer_type,
    parse_binance_transfer_type,
)

W = WalletKind


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        (W.SPOT, W.UM, "MAIN_UMFUTURE"),
        (W.SPOT, W.CM, "MAIN_CMFUTURE"),
        (W.SPOT, W.MARGIN, "MAIN_MARGIN"),
        (W.SPOT, W.PM, "MAIN_PORTFOLIO_MARGIN"),
        (W.PM, W.SPOT, "PORTFOLIO_MARGIN_MAIN"),
        (W.UM, W.SPOT, "UMFUTURE_MAIN"),
        (W.FUNDING, W.UM, "FUNDING_UMFUTURE"),
        (W.MARGIN, W.CM, "MARGIN_CMFUTURE"),
        (W.SPOT, W.OPTIONS, "MAIN_OPTION"),
        (W.OPTIONS, W.UM, "OPTION_UMFUTURE"),
    ],
)
def test_binance_transfer_type_with_known_pair_returns_binance_enum(
    src: WalletKind, dst: WalletKind, expected: str
) -> None:
    assert binance_transfer_type(src, dst) == expected
    assert parse_binance_transfer_type(expected) == (src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [(W.UM, W.CM), (W.CM, W.UM), (W.SPOT, W.SPOT), (W.FUNDING, W.PM), (W.PM, W.UM)],
)
def test_binance_transfer_type_with_unsupported_pair_raises_not_allowed(
    src: WalletKind, dst: WalletKind
) -> None:
    with pytest.raises(TransferNotAllowed, match="no Binance universal-transfer type"):
        binance_transfer_type(src, dst)


def test_mapping_with_every_type_round_trips_and_never_names_isolated_margin() -> None:
    for pair, t in BINANCE_TRANSFER_TYPES.items():
        assert parse_binance_transfer_type(t) == pair
        assert "ISOLATED" not in t
    assert len(set(BINANCE_TRANSFER_TYPES.values())) == len(BINANCE_TRANSFER_TYPES)


def test_parse_binance_transfer_type_with_isolated_type_raises() -> None:
    with pytest.raises(DataError, match="unknown Binance transfer type"):
        parse_binance_transfer_type("MAIN_ISOLATED_MARGIN")


def test_transfer_with_unknown_wallet_name_raises_before_any_request(sims: DeskVenues) -> None:
    venue = sims.venues["sim-a"]
    before = venue.http_requests
    with pytest.raises(DataError, match="unknown wallet kind 'future'"):
        venue.transfer(
            Asset("USDT"), Decimal(1), W.SPOT, "future", "k-unknown", ts_deadline_ns=None
        )  # type: ignore[arg-type]
    with pytest.raises(TransferNotAllowed):
        venue.transfer(Asset("USDT"), Decimal(1), W.UM, W.CM, "k-um-cm", ts_deadline_ns=None)
    assert venue.http_requests == before


def test_ccxt_transfer_with_future_account_name_goes_out_as_isolated_margin(
    sims: DeskVenues,
) -> None:
    """The ccxt 4.5.90 behaviour DESIGN §6 warns about, reproduced on the simulator."""
    venue = sims.venues["sim-a"]
    dialect = sims.dialects["sim-a"]
    ex = venue.exchange
    with pytest.raises(Exception, match="-1130"):
        ex.transfer("USDT", 1, "spot", "future")
    assert dialect.last_params["type"] == "MAIN_ISOLATED_MARGIN"
    assert dialect.last_params["toSymbol"] == "FUTURE"
    assert dialect.request_log[-1] == ("POST", "/sapi/v1/asset/transfer")
    # ccxt's own names for the futures wallets are 'linear'/'swap' and 'inverse':
    ex.transfer("USDT", 1, "spot", "linear")
    assert dialect.last_params["type"] == "MAIN_UMFUTURE"
    ex.transfer("BTC", 0.1, "spot", "inverse")
    assert dialect.last_params["type"] == "MAIN_CMFUTURE"
    # The adapter's hooks leave no copy of the signed request on the exchange object.
    assert ex.last_request_body is ex.last_request_headers is ex.last_request_url is None


def test_adapter_transfer_with_sim_isolated_refusal_is_a_venue_rejection(sims: DeskVenues) -> None:
    """The same -1130 through the adapter is a typed rejection, not a raw ccxt error."""
    venue = sims.venues["sim-a"]
    from core.venues.errors import translate_ccxt_errors

    with (
        pytest.raises(VenueRejected),
        translate_ccxt_errors("transfer", "sim-a", is_write=True),
    ):
        venue.exchange.transfer("USDT", 1, "spot", "future")
