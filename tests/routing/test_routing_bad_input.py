"""Bad input is refused with a DataError naming the source and the field (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import DataError
from core.routing import CollateralSource, Deficit, RoutingInput, Segment, Tier, parse_problem

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "route-problem.json"


def problem() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def refused(obj: object) -> DataError:
    with pytest.raises(DataError) as info:
        parse_problem(obj)
    return info.value


def test_parse_with_negative_deficit_names_the_field() -> None:
    p = problem()
    p["deficit_usd"] = -5
    err = refused(p)
    assert err.context["field"] == "deficit_usd"
    assert "must be >= 0" in str(err)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_parse_with_nan_cost_names_source_and_field(bad: float) -> None:
    p = problem()
    p["sources"][3]["segments"][0]["cost_per_usd"] = bad
    err = refused(p)
    assert err.context["field"] == "cost_per_usd"
    assert "usdc-swap-usdt" in str(err.context["source"])
    assert "NaN or infinite" in str(err)


@pytest.mark.parametrize("credit", [0.0, -0.1, 1.0001, 2])
def test_parse_with_credit_outside_unit_interval_names_source_and_field(credit: float) -> None:
    p = problem()
    p["sources"][1]["segments"][0]["credit_per_usd"] = credit
    err = refused(p)
    assert err.context["field"] == "credit_per_usd"
    assert "btc-in-pm" in str(err.context["source"])


def test_parse_with_credit_rising_across_segments_is_not_concave() -> None:
    p = problem()
    p["sources"][3]["segments"] = [
        {"width_usd": 100, "credit_per_usd": 0.95, "cost_per_usd": 0.001},
        {"width_usd": 100, "credit_per_usd": 0.99, "cost_per_usd": 0.002},
    ]
    err = refused(p)
    assert err.context["source"] == "usdc-swap-usdt"
    assert err.context["field"] == "segments[1].credit_per_usd"
    assert "not concave" in str(err)


def test_parse_with_cost_falling_across_segments_is_not_convex() -> None:
    p = problem()
    p["sources"][3]["segments"] = [
        {"width_usd": 100, "credit_per_usd": 0.99, "cost_per_usd": 0.003},
        {"width_usd": 100, "credit_per_usd": 0.98, "cost_per_usd": 0.002},
    ]
    err = refused(p)
    assert err.context["field"] == "segments[1].cost_per_usd"
    assert "not convex" in str(err)


def test_parse_with_empty_source_list_is_refused() -> None:
    p = problem()
    p["sources"] = []
    err = refused(p)
    assert err.context["field"] == "sources"
    assert "empty" in str(err)


@pytest.mark.parametrize("deadline", [0, -1])
def test_parse_with_non_positive_deadline_names_the_field(deadline: float) -> None:
    p = problem()
    p["deadline_s"] = deadline
    err = refused(p)
    assert err.context["field"] == "deadline_s"


def test_parse_with_unknown_key_refuses_instead_of_dropping_a_limit() -> None:
    p = problem()
    p["sources"][2]["preauth"] = 250  # typo for preauth_usd
    err = refused(p)
    assert "preauth" in str(err)
    assert "usdt-spot-to-pm" in str(err.context["field"])


def test_parse_with_missing_segment_field_names_it() -> None:
    p = problem()
    del p["sources"][0]["segments"][0]["width_usd"]
    err = refused(p)
    assert err.context["field"] == "width_usd"
    assert "upnl-btcusdt-perp" in str(err.context["source"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tier", 4),
        ("latency_s", -1),
        ("preauth_usd", 0),
        ("rate_per_s", -2),
        ("min_ticket_usd", "x"),
    ],
)
def test_parse_with_bad_source_number_names_source_and_field(field: str, value: object) -> None:
    p = problem()
    p["sources"][2][field] = value
    err = refused(p)
    assert err.context["field"] == field
    assert "usdt-spot-to-pm" in str(err.context["source"])


def test_input_with_duplicate_source_ids_is_refused() -> None:
    s = CollateralSource("a", Tier.TRANSFER, 1.0, (Segment(10.0, 1.0, 0.0),))
    with pytest.raises(DataError, match="duplicate"):
        RoutingInput((Deficit("c", 5.0, 60.0),), (s, s))


def test_input_with_undeclared_shared_limit_names_source() -> None:
    s = CollateralSource("a", Tier.TRANSFER, 1.0, (Segment(10.0, 1.0, 0.0),), groups=("cold",))
    with pytest.raises(DataError) as info:
        RoutingInput((Deficit("c", 5.0, 60.0),), (s,))
    assert info.value.context["source"] == "a"
    assert info.value.context["field"] == "groups"


def test_parse_with_non_object_is_refused() -> None:
    with pytest.raises(DataError, match="JSON object"):
        parse_problem([1, 2])
