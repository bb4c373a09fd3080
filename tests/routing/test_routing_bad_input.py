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
        ("latency_s", 2e9),
        ("rate_per_s", 1e7),
        ("per_request_usd", 1e-9),
        ("api_weight", 1e13),
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


MONEY_FIELDS_OF_SOURCE = ("preauth_usd", "per_request_usd", "fixed_fee_usd", "min_ticket_usd")


@pytest.mark.parametrize("value", [1e18, 1e20, "1e19", 10**30])
def test_parse_with_deficit_at_or_above_money_limit_names_the_field(value: object) -> None:
    p = problem()
    p["deficit_usd"] = value
    err = refused(p)
    assert err.context["field"] == "deficit_usd"
    assert "1e18" in str(err)


@pytest.mark.parametrize("field", MONEY_FIELDS_OF_SOURCE)
def test_parse_with_source_money_above_limit_names_source_and_field(field: str) -> None:
    p = problem()
    p["sources"][2][field] = 2e18
    err = refused(p)
    assert err.context["field"] == field
    assert "usdt-spot-to-pm" in str(err.context["source"])
    assert "1e18" in str(err)


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("shared_limits_usd", "shared_limits_usd[g]"),
        ("origin_headroom_usd", "origin_headroom_usd[g]"),
    ],
)
def test_parse_with_limit_map_above_money_limit_names_the_entry(key: str, field: str) -> None:
    p = problem()
    p[key] = {"g": 5e18}
    err = refused(p)
    assert err.context["field"] == field


def test_api_with_width_above_money_limit_is_refused_like_the_json() -> None:
    with pytest.raises(DataError) as info:
        Segment(1e19, 1.0, 0.0)
    assert info.value.context["field"] == "width_usd"
    with pytest.raises(DataError) as info:
        Deficit("c", 1e20, 60.0)
    assert info.value.context["field"] == "deficit_usd"
    with pytest.raises(DataError) as info:
        CollateralSource("a", Tier.TRANSFER, 1.0, (Segment(10.0, 1.0, 0.0),), available_usd=1e18)
    assert info.value.context["field"] == "available_usd"


def test_parse_with_money_as_decimal_strings_equals_numbers() -> None:
    as_numbers = problem()
    as_strings = problem()
    as_strings["deficit_usd"] = "1029.80"
    as_strings["sources"][2]["preauth_usd"] = "250"
    as_strings["sources"][3]["segments"][0] = {
        "width_usd": "2000",
        "credit_per_usd": "0.998",
        "cost_per_usd": "0.002",
    }
    assert parse_problem(as_strings) == parse_problem(as_numbers)


def rich_problem() -> dict[str, Any]:
    """The example problem with every optional number set (limits, rates, weights, dust)."""
    p = problem()
    p.update(
        {
            "mm_usd": 5000,
            "target_ratio": 1.6,
            "shared_limits_usd": {"hot": 600},
            "origin_headroom_usd": {"okx-pm": 900},
            "api_weight_budget": {"okx": 50},
            "latency_weight_usd_per_usd_s": 1e-6,
            "tie_break_usd_per_usd": 1e-9,
            "dust_usd": 0.01,
            "min_step_frac": 1e-6,
        }
    )
    p["sources"][2].update(
        {"groups": ["hot"], "rate_per_s": 2, "per_request_usd": 100, "available_usd": 4000}
    )
    p["sources"][3].update(
        {
            "venue": "okx",
            "api_weight": 5,
            "origin_pool": "okx-pm",
            "origin_debit_per_usd": 0.9,
            "step_usd": 0.1,
        }
    )
    return p


def _numeric_paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _numeric_paths(v, (*path, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _numeric_paths(v, (*path, i))]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [path]
    return []


def _set(obj: Any, path: tuple[Any, ...], value: object) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


@pytest.mark.parametrize("value", [1e300, -1e300, 1e20, 5e-324, -5e-324, "abc", "1e400", True])
def test_route_with_any_number_set_to_an_extreme_plans_or_refuses_cleanly(value: object) -> None:
    # the whole kind of issue 12 point 9: every numeric field of the example problem, set to
    # an extreme, gives either a plan that serialises or a DataError naming that field
    from core.routing import Router, plan_to_json

    router = Router()
    paths = _numeric_paths(rich_problem())
    assert len(paths) > 40
    for path in paths:
        p = rich_problem()
        _set(p, path, value)
        error: DataError | None = None
        try:
            inp = parse_problem(p)
        except DataError as exc:
            error = exc
        if error is not None:
            assert str(path[-1]) in str(error.context["field"]), (path, error)
            continue
        json.dumps(plan_to_json(router.route(inp)))
