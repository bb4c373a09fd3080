"""The option checks every command shares (flows.cli_common): one wording for one mistake."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError, DataError
from flows.cli_common import (
    as_of_or_now,
    check_money,
    check_number,
    check_port,
    parse_as_of,
    refuse_option,
    require_one_of,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T12:00:00Z", datetime(2026, 11, 27, 12, tzinfo=UTC)),
        ("2026-11-27T12:00:00+00:00", datetime(2026, 11, 27, 12, tzinfo=UTC)),
        ("2026-11-27T14:30:00+02:30", datetime(2026, 11, 27, 12, tzinfo=UTC)),
        (" 2026-11-27T12:00:00.250Z ", datetime(2026, 11, 27, 12, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_parse_as_of_with_a_zoned_instant_returns_it_in_utc(text: str, expected: datetime) -> None:
    at = parse_as_of(text)
    assert at == expected
    assert at is not None
    assert at.utcoffset() is not None
    assert at.tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-11-27", "2026-11-27T12:00:00"])
def test_parse_as_of_without_a_timezone_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--as-of needs a timezone \(UTC: end it with Z\)"):
        parse_as_of(text)


@pytest.mark.parametrize("text", ["tomorrow", "27/11/2026 12:00", "", "2026-13-01T00:00:00Z"])
def test_parse_as_of_with_garbage_is_refused_naming_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--as-of must be an ISO-8601 instant"):
        parse_as_of(text)


def test_as_of_or_now_with_an_instant_returns_it_and_without_reads_the_clock() -> None:
    fixed = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert as_of_or_now(fixed) is fixed
    before = datetime.now(tz=UTC)
    now = as_of_or_now(None)
    assert before <= now <= datetime.now(tz=UTC)


def test_require_one_of_with_one_given_returns_its_name() -> None:
    assert require_one_of({"--problem FILE": None, "--desk FILE": "d.toml"}) == "--desk FILE"


def test_require_one_of_with_none_given_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"^give one of --a or --b$"):
        require_one_of({"--a": None, "--b": None})


def test_require_one_of_with_two_given_names_both() -> None:
    with pytest.raises(ConfigError, match=r"^--a and --b cannot be combined: give exactly one"):
        require_one_of({"--a": "x", "--b": "y", "--c": None})


@pytest.mark.parametrize("value", [None, False, [], ()])
def test_refuse_option_when_not_given_passes(value: object) -> None:
    refuse_option("--pool", value, because="goes with --desk")


@pytest.mark.parametrize("value", ["sim-a.pm", True, ["a"], 0, 0.0])
def test_refuse_option_when_given_says_why(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^--pool goes with --desk$"):
        refuse_option("--pool", value, because="goes with --desk")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_check_number_refuses_nan_and_infinities(value: float) -> None:
    with pytest.raises(ConfigError, match="--vol-up must be a finite number"):
        check_number(value, "--vol-up", gt=-1.0)


def test_check_number_applies_each_bound_strictly_or_not() -> None:
    assert check_number(1e-9, "--deadline", gt=0.0) == 1e-9
    with pytest.raises(ConfigError, match=r"--deadline must be > 0 \(value=0.0\)"):
        check_number(0.0, "--deadline", gt=0.0)
    assert check_number(0.0, "--x", ge=0.0) == 0.0
    with pytest.raises(ConfigError, match="--x must be >= 0"):
        check_number(-0.5, "--x", ge=0.0)
    with pytest.raises(ConfigError, match="--x must be < 10"):
        check_number(10.0, "--x", lt=10.0)


def test_check_money_at_the_size_limit_is_refused_and_just_below_passes() -> None:
    assert check_money(None, "--deficit") is None
    assert check_money(250_000.0, "--deficit") == Decimal("250000.0")
    assert check_money(9.99e17, "--deficit") == Decimal("9.99E+17")
    with pytest.raises(DataError, match=r"implausibly large \(>= 1e18\).*field=--deficit"):
        check_money(1e18, "--deficit")
    with pytest.raises(DataError, match="implausibly large"):
        check_money(1e20, "--deficit")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_check_money_refuses_nan_and_infinity(value: float) -> None:
    with pytest.raises(DataError, match="NaN or infinite"):
        check_money(value, "--deficit")


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_check_money_refuses_zero_and_negative(value: float) -> None:
    with pytest.raises(DataError, match="--deficit must be > 0 USD"):
        check_money(value, "--deficit")


@given(st.integers(min_value=0, max_value=65535))
def test_check_port_accepts_every_tcp_port(port: int) -> None:
    assert check_port(port) == port


@given(st.integers().filter(lambda p: not 0 <= p <= 65535))
def test_check_port_refuses_everything_else(port: int) -> None:
    with pytest.raises(ConfigError, match=r"--port must be in 0\.\.65535"):
        check_port(port)
