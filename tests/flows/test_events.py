"""The events contract: declared payload keys, flat values, derived ids (no flow run needed)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from flows.events import (
    EVENT_PAYLOAD_KEYS,
    MARGIN_CALL,
    emit,
    event_id,
    flat,
    pool_resource,
)


def test_event_ids_are_derived_from_the_call_id_and_stable() -> None:
    assert event_id(MARGIN_CALL, "mc-1") == event_id(MARGIN_CALL, "mc-1")
    assert event_id(MARGIN_CALL, "mc-1") != event_id(MARGIN_CALL, "mc-2")
    assert event_id(MARGIN_CALL, "mc-1").version == 5


def test_payload_with_a_missing_or_extra_key_is_refused_naming_them() -> None:
    keys = dict.fromkeys(EVENT_PAYLOAD_KEYS[MARGIN_CALL], "x")
    del keys["margin_call_id"]
    with pytest.raises(ValueError, match=r"missing \['margin_call_id'\], extra \['oops'\]"):
        emit(MARGIN_CALL, pool_resource("sim-b", "sim-b.opt"), {**keys, "oops": 1}, id_parts=("c",))
    with pytest.raises(ValueError, match=r"unknown pmr event 'pmr\.nope'"):
        emit("pmr.nope", pool_resource("sim-b", "sim-b.opt"), {}, id_parts=("c",))


def test_flat_values_are_strings_and_numbers_only() -> None:
    assert [flat(v) for v in (Decimal("2.5"), None, False, 7, 1.5, "x")] == [
        2.5, "none", "false", 7, 1.5, "x",
    ]  # fmt: skip
    assert pool_resource("sim-b", "sim-b.opt")["prefect.resource.id"] == "pmr.pool.sim-b.sim-b.opt"
