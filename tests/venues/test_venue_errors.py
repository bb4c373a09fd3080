"""The error classification table: ccxt exception × Binance code × read/write → our class."""

from __future__ import annotations

import ccxt
import pytest
import requests

from core.errors import (
    InsufficientFunds,
    OutcomeUnknown,
    RateLimited,
    TransferNotAllowed,
    VenueError,
    VenueFatal,
    VenueRejected,
    VenueUnavailable,
)
from core.venues.errors import (
    ClockSkewRejected,
    api_family,
    binance_code_from_message,
    is_retryable,
    translate_ccxt_errors,
)


def _translate(
    exc: Exception, *, is_write: bool, headers: dict[str, str] | None = None
) -> VenueError:
    with (
        pytest.raises(VenueError) as info,
        translate_ccxt_errors(
            "transfer", "sim-a", is_write=is_write, response_headers=headers, asset="USDT"
        ),
    ):
        raise exc
    assert info.value.__cause__ is exc
    return info.value


CASES = [
    # (ccxt exception, is_write, expected class)
    (
        ccxt.ExchangeError('binance {"code":-5013,"msg":"Asset transfer failed"}'),
        True,
        InsufficientFunds,
    ),
    (ccxt.InsufficientFunds('binance {"code":-5013,"msg":"x"}'), True, InsufficientFunds),
    (
        ccxt.ExchangeError('binance {"code":-3041,"msg":"Balance is not enough"}'),
        True,
        InsufficientFunds,
    ),
    (
        ccxt.ExchangeError('binance {"code":-2019,"msg":"Margin is insufficient."}'),
        True,
        InsufficientFunds,
    ),
    (ccxt.DDoSProtection("binance 429 Too Many Requests {}"), True, RateLimited),
    (ccxt.DDoSProtection("binance 418 I'm a teapot {}"), False, RateLimited),
    (
        ccxt.ExchangeError('binance {"code":-1003,"msg":"Too much request weight"}'),
        False,
        RateLimited,
    ),
    (ccxt.RequestTimeout("binance POST http://x/sapi/v1/asset/transfer"), True, OutcomeUnknown),
    (ccxt.RequestTimeout("binance GET http://x/api/v3/account"), False, VenueUnavailable),
    (ccxt.NetworkError("binance POST reset"), True, OutcomeUnknown),
    (ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"), True, OutcomeUnknown),
    (ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"), False, VenueUnavailable),
    (ccxt.ExchangeError('binance {"code":-1007,"msg":"Timeout waiting"}'), True, OutcomeUnknown),
    (ccxt.ExchangeError('binance {"code":-1007,"msg":"Timeout waiting"}'), False, VenueUnavailable),
    (
        ccxt.ExchangeError('binance {"code":-1021,"msg":"Timestamp outside recvWindow"}'),
        True,
        ClockSkewRejected,
    ),
    (
        # ccxt raises InvalidNonce (a NetworkError) for -1021 from api.binance.com: the code
        # decides, so it is a clock refusal (not applied), never an unknown outcome
        ccxt.InvalidNonce(
            'binance {"code":-1021,"msg":"Timestamp for this request was 1000ms ahead"}'
        ),
        True,
        ClockSkewRejected,
    ),
    (ccxt.ExchangeError('binance {"code":-1020,"msg":"not supported"}'), True, TransferNotAllowed),
    (ccxt.ExchangeError('binance {"code":-1111,"msg":"Precision"}'), True, VenueRejected),
    (ccxt.ExchangeError('binance {"code":-2015,"msg":"Invalid API-key"}'), False, VenueFatal),
    (ccxt.AuthenticationError('binance {"code":-1022,"msg":"Signature"}'), False, VenueFatal),
    (ccxt.AuthenticationError("binance requires apiKey"), False, VenueFatal),
    (ccxt.BadRequest("binance bad"), True, VenueRejected),
    (ccxt.ExchangeError('binance {"code":-99999,"msg":"new code"}'), True, VenueRejected),
]


@pytest.mark.parametrize(("exc", "is_write", "expected"), CASES)
def test_translate_with_ccxt_error_gives_expected_class(
    exc: Exception, is_write: bool, expected: type[VenueError]
) -> None:
    err = _translate(exc, is_write=is_write)
    assert type(err) is expected
    assert err.context["venue"] == "sim-a"
    assert err.context["op"] == "transfer"
    assert err.context["asset"] == "USDT"


def test_translate_with_connect_refused_write_is_unavailable_not_unknown() -> None:
    """A write that provably never left (connection refused) is safe to resend."""
    exc = ccxt.NetworkError("binance POST http://127.0.0.1:1/sapi/v1/asset/transfer")
    exc.__cause__ = requests.exceptions.ConnectionError("NewConnectionError: Connection refused")
    assert type(_translate(exc, is_write=True)) is VenueUnavailable


def test_translate_with_retry_after_header_reports_wait() -> None:
    err = _translate(
        ccxt.DDoSProtection("binance 429"), is_write=True, headers={"Retry-After": "7"}
    )
    assert isinstance(err, RateLimited)
    assert err.retry_after_s == 7.0


def test_translate_with_same_code_from_any_host_classifies_the_same() -> None:
    """ccxt maps -5013 only for api.binance.com URLs; our table ignores the host."""
    for host in ("https://api.binance.com", "http://127.0.0.1:8800/sim-a", "http://x.sim.invalid"):
        ex = ccxt.binance()
        body = '{"code":-5013,"msg":"Asset transfer failed: insufficient balance"}'
        with pytest.raises(ccxt.ExchangeError) as raw:
            ex.handle_errors(
                400,
                "Bad Request",
                host + "/sapi/v1/asset/transfer",
                "POST",
                {},
                body,
                {"code": -5013, "msg": "Asset transfer failed: insufficient balance"},
                {},
                "",
            )
        assert type(_translate(raw.value, is_write=True)) is InsufficientFunds


def test_ccxt_with_loopback_host_loses_insufficient_funds_class() -> None:
    """Why we classify by code: ccxt's class depends on the hostname."""
    ex = ccxt.binance()
    body = '{"code":-5013,"msg":"Asset transfer failed: insufficient balance"}'
    parsed = {"code": -5013, "msg": "Asset transfer failed: insufficient balance"}
    with pytest.raises(ccxt.InsufficientFunds):
        ex.handle_errors(
            400,
            "",
            "https://api.binance.com/sapi/v1/asset/transfer",
            "POST",
            {},
            body,
            parsed,
            {},
            "",
        )
    with pytest.raises(ccxt.ExchangeError) as info:
        ex.handle_errors(
            400,
            "",
            "http://127.0.0.1:8800/sapi/v1/asset/transfer",
            "POST",
            {},
            body,
            parsed,
            {},
            "",
        )
    assert not isinstance(info.value, ccxt.InsufficientFunds)


@pytest.mark.parametrize(
    ("exc", "is_write", "retry"),
    [
        (OutcomeUnknown("x"), True, False),
        (OutcomeUnknown("x"), False, True),
        (RateLimited("x"), True, True),
        (VenueUnavailable("x"), True, True),
        (ClockSkewRejected("x"), False, True),
        (ClockSkewRejected("x"), True, False),
        (InsufficientFunds("x"), False, False),
        (TransferNotAllowed("x"), True, False),
        (VenueRejected("x"), False, False),
        (VenueFatal("x"), False, False),
        (ValueError("x"), False, False),
    ],
)
def test_is_retryable_with_error_class_gives_table_value(
    exc: BaseException, is_write: bool, retry: bool
) -> None:
    assert is_retryable(exc, is_write=is_write) is retry


@pytest.mark.parametrize(
    ("url", "family"),
    [
        ("https://api.binance.com/sapi/v1/asset/transfer", "sapi"),
        ("http://127.0.0.1:9/sim-a/fapi/v3/account", "fapi"),
        ("/dapi/v1/account", "dapi"),
        ("/papi/v1/balance", "papi"),
        ("/api/v3/account", "api"),
        ("/futures/data/x", "other"),
    ],
)
def test_api_family_with_url_gives_family(url: str, family: str) -> None:
    assert api_family(url) == family


def test_binance_code_from_message_with_body_and_without() -> None:
    assert binance_code_from_message('binance {"code":-5013,"msg":"x"}') == -5013
    assert binance_code_from_message("binance POST url") is None
