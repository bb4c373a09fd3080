"""One key scheme: margin call ids, plan ids and leg keys (``core.ledger.keys``)."""

from __future__ import annotations

import doctest
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core.ledger.keys
from core.clock import ManualClock
from core.errors import DataError
from core.ledger.keys import MAX_CALL_ID_LEN, leg_key, new_margin_call_id, plan_id

CALL = "mc-20260312-093000123-3f9a1c0d2b7e4a51"
T0_NS = 1_773_307_800_123_000_000  # 2026-03-12 09:30:00.123 UTC


def test_leg_key_with_same_position_is_stable_32_lowercase_hex() -> None:
    key = leg_key(CALL, 1, 0, 0)
    assert key == leg_key(CALL, 1, 0, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", key)  # OKX clientId: <= 32 alphanumerics


def test_leg_keys_of_every_position_in_a_grid_are_distinct() -> None:
    calls = [CALL, "mc-20260312-093000123-3f9a1c0d2b7e4a52", "call-1"]
    positions = list(itertools.product(calls, range(1, 5), range(12), range(4)))
    keys = {leg_key(*p) for p in positions}
    assert len(keys) == len(positions) == 576


@given(
    st.tuples(
        st.from_regex(r"[a-z0-9][a-z0-9.:-]{0,40}", fullmatch=True),
        st.integers(1, 10**5),
        st.integers(0, 10**4),
        st.integers(0, 50),
    ),
    st.tuples(
        st.from_regex(r"[a-z0-9][a-z0-9.:-]{0,40}", fullmatch=True),
        st.integers(1, 10**5),
        st.integers(0, 10**4),
        st.integers(0, 50),
    ),
)
def test_leg_key_with_any_two_positions_is_equal_only_for_the_same_position(
    a: tuple[str, int, int, int], b: tuple[str, int, int, int]
) -> None:
    """The fields are joined with a separator no call id contains: ("a", 11, 1, 0) and
    ("a1", 1, 1, 0) cannot spell the same input."""
    assert (leg_key(*a) == leg_key(*b)) == (a == b)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", 1, 0, 0), "margin_call_id"),
        (("call 1", 1, 0, 0), "margin_call_id"),
        (("c" * (MAX_CALL_ID_LEN + 1), 1, 0, 0), "margin_call_id"),
        ((CALL, 0, 0, 0), "plan_version"),
        ((CALL, 1, -1, 0), "step_no"),
        ((CALL, 1, 0, -1), "leg_no"),
        ((CALL, True, 0, 0), "plan_version"),
    ],
)
def test_leg_key_with_bad_position_names_the_field(args: tuple[object, ...], field: str) -> None:
    with pytest.raises(DataError) as caught:
        leg_key(*args)  # type: ignore[arg-type]
    assert caught.value.context["field"] == field


def test_plan_id_names_the_call_and_version_and_fits_the_id_column() -> None:
    assert plan_id(CALL, 3) == f"{CALL}.v3"
    longest = plan_id("c" * MAX_CALL_ID_LEN, 999_999)
    assert len(longest) == 64
    with pytest.raises(DataError, match="below 1,000,000"):
        plan_id(CALL, 1_000_000)


def test_margin_call_id_with_fixed_clock_and_randomness_is_fixed() -> None:
    clock = ManualClock(T0_NS)
    call = new_margin_call_id(clock, random_bytes=lambda n: bytes(range(n)))
    assert call == "mc-20260312-093000123-0001020304050607"
    assert len(call) == 38
    assert plan_id(call, 1)  # a valid call id for the plans it will have


def test_margin_call_ids_sort_by_time_and_differ_within_one_millisecond() -> None:
    clock = ManualClock(T0_NS)
    same_ms = {new_margin_call_id(clock) for _ in range(200)}  # os.urandom
    assert len(same_ms) == 200
    ids = []
    for step_s in (0.001, 0.5, 59.0, 3600.0, 86_400.0 * 40):
        clock.advance(step_s)
        ids.append(new_margin_call_id(clock, random_bytes=lambda n: b"\xff" * n))
    ids.insert(0, new_margin_call_id(ManualClock(T0_NS), random_bytes=lambda n: b"\xff" * n))
    assert ids == sorted(ids)
    assert ids[1] == "mc-20260312-093000124-ffffffffffffffff"


def test_keys_docstring_examples_run_as_written() -> None:
    result = doctest.testmod(core.ledger.keys)
    assert (result.attempted, result.failed) == (4, 0)
