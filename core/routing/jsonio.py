"""JSON in and out for the router: exactly the schema of DESIGN §5.3, plus optional extensions.

Input (``problem``)::

    {"deficit_usd": D, "deadline_s": T, "policy": "strict"|"cost",
     "sources": [{"id", "tier", "latency_s",
                  "segments": [{"width_usd", "credit_per_usd", "cost_per_usd"}],
                  "preauth_usd"?, "rate_per_s"?, "per_request_usd"?, "fixed_fee_usd"?,
                  "min_ticket_usd"?}]}

Optional extensions (all documented in docs/routing.md, "Problem schema"): per source ``available_usd``,
``api_weight``, ``venue``, ``origin_pool``, ``origin_debit_per_usd``, ``step_usd``, ``calls``,
``groups``, ``mode``; at the top ``call_id``, ``pool``, ``target_ratio``, ``mm_usd``, ``calls``
(several deficits solved jointly, instead of ``deficit_usd``/``deadline_s``),
``shared_limits_usd``, ``origin_headroom_usd``, ``api_weight_budget``,
``latency_weight_usd_per_usd_s``, ``tie_break_usd_per_usd``, ``dust_usd``, ``min_step_frac``.
Unknown keys are refused (a typo in a limit must not silently drop the limit). Every number may
be a JSON number or a decimal string; each is range-checked where it enters
(``core.routing.checks``: money below 1e18 USD, rates in [0, 1], ...).

Output (``plan``): the DESIGN §5.3 keys, each allocation extended with ``call``, ``tier``,
``mode``, ``requests``, ``latency_s``, ``cost_per_credit_usd``, ``binding``, ``why`` and
``idempotency_key``; the plan with ``policy``, ``method``, ``fallback_reason``, ``plan_id``,
``shadow_price_usd_per_usd``, ``calls``, ``solves``, ``stages``, ``config`` and ``notes``.
Money is written as decimal strings to 1e-8 USD (as the margin reports do); seconds, shadow
prices and fractions as JSON numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Context, Decimal
from typing import Any

from core.errors import DataError
from core.routing.plan import Allocation, Alternative, CallOutcome, Plan
from core.routing.sources import (
    DEFAULT_DUST_USD,
    DEFAULT_LATENCY_WEIGHT_USD_PER_USD_S,
    DEFAULT_MIN_STEP_FRAC,
    DEFAULT_STEP_USD,
    DEFAULT_TIER_TIE_BREAK_USD_PER_USD,
    CollateralSource,
    Deficit,
    Policy,
    RoutingInput,
    Segment,
    SourceMode,
    Tier,
)

__all__ = ["input_to_json", "money_str", "parse_problem", "plan_to_json"]

_SOURCE_REQUIRED = ("id", "tier", "latency_s", "segments")
_SOURCE_OPTIONAL = (
    "preauth_usd",
    "rate_per_s",
    "per_request_usd",
    "fixed_fee_usd",
    "min_ticket_usd",
    "available_usd",
    "api_weight",
    "venue",
    "origin_pool",
    "origin_debit_per_usd",
    "step_usd",
    "calls",
    "groups",
    "mode",
)
_SEGMENT_KEYS = ("width_usd", "credit_per_usd", "cost_per_usd")
_TOP_KEYS = {
    "deficit_usd",
    "deadline_s",
    "policy",
    "sources",
    "call_id",
    "pool",
    "target_ratio",
    "mm_usd",
    "calls",
    "shared_limits_usd",
    "origin_headroom_usd",
    "api_weight_budget",
    "latency_weight_usd_per_usd_s",
    "tie_break_usd_per_usd",
    "dust_usd",
    "min_step_frac",
}
_CALL_KEYS = {"id", "deficit_usd", "deadline_s", "pool", "target_ratio", "mm_usd"}
_DEFAULT_MODE = {
    Tier.PNL_OFFSET: SourceMode.PNL_OFFSET,
    Tier.IN_PRODUCT: SourceMode.IN_PLACE,
    Tier.TRANSFER: SourceMode.TRANSFER,
}


def _require_mapping(obj: object, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", field=where)
    return obj


def _unknown(obj: Mapping[str, Any], allowed: set[str] | tuple[str, ...], where: str) -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise DataError(
            f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}",
            field=where,
        )


def _parse_source(raw: object, index: int) -> CollateralSource:
    where = f"sources[{index}]"
    obj = _require_mapping(raw, where)
    sid = obj.get("id")
    label = f"{where} (id={sid})" if sid is not None else where
    for key in _SOURCE_REQUIRED:
        if key not in obj:
            raise DataError("missing required field", source=label, field=key)
    _unknown(obj, (*_SOURCE_REQUIRED, *_SOURCE_OPTIONAL), label)
    segs_raw = obj["segments"]
    if not isinstance(segs_raw, Sequence) or isinstance(segs_raw, (str, bytes)):
        raise DataError("segments must be a list", source=label, field="segments")
    segments: list[Segment] = []
    for k, seg_raw in enumerate(segs_raw):
        seg_where = f"{label} segments[{k}]"
        seg = _require_mapping(seg_raw, seg_where)
        for key in _SEGMENT_KEYS:
            if key not in seg:
                raise DataError("missing required field", source=seg_where, field=key)
        _unknown(seg, _SEGMENT_KEYS, seg_where)
        segments.append(
            Segment.checked(
                seg["width_usd"], seg["credit_per_usd"], seg["cost_per_usd"], where=seg_where
            )
        )
    tier_raw = obj["tier"]
    if isinstance(tier_raw, bool) or not isinstance(tier_raw, int) or tier_raw not in (1, 2, 3):
        raise DataError("tier must be 1, 2 or 3", source=label, field="tier", value=tier_raw)
    tier = Tier(tier_raw)
    calls = obj.get("calls")
    groups = obj.get("groups", ())
    for name, val in (("calls", calls), ("groups", groups)):
        if val is not None and (
            not isinstance(val, Sequence)
            or isinstance(val, str)
            or not all(isinstance(v, str) for v in val)
        ):
            raise DataError("must be a list of strings", source=label, field=name)
    for name in ("venue", "origin_pool", "mode"):
        if name in obj and obj[name] is not None and not isinstance(obj[name], str):
            raise DataError("must be a string", source=label, field=name)
    return CollateralSource(
        id=str(sid),
        tier=tier,
        latency_s=obj["latency_s"],
        segments=tuple(segments),
        preauth_usd=obj.get("preauth_usd"),
        rate_per_s=obj.get("rate_per_s"),
        per_request_usd=obj.get("per_request_usd"),
        fixed_fee_usd=obj.get("fixed_fee_usd", 0.0),
        min_ticket_usd=obj.get("min_ticket_usd", 0.0),
        available_usd=obj.get("available_usd"),
        api_weight=obj.get("api_weight", 0.0),
        venue=obj.get("venue") or "",
        origin_pool=obj.get("origin_pool"),
        origin_debit_per_usd=obj.get("origin_debit_per_usd", 1.0),
        step_usd=obj.get("step_usd", DEFAULT_STEP_USD),
        calls=None if calls is None else frozenset(calls),
        groups=tuple(groups),
        mode=SourceMode(obj["mode"]) if "mode" in obj else _DEFAULT_MODE[tier],
    )


def _parse_call(obj: Mapping[str, Any], where: str, default_id: str) -> Deficit:
    for key in ("deficit_usd", "deadline_s"):
        if key not in obj:
            raise DataError("missing required field", source=where, field=key)
    return Deficit(
        id=str(obj.get("id", default_id)),
        deficit_usd=obj["deficit_usd"],
        deadline_s=obj["deadline_s"],
        pool=obj.get("pool"),
        target_ratio=obj.get("target_ratio"),
        mm_usd=obj.get("mm_usd"),
    )


def _str_map(obj: Mapping[str, Any], key: str) -> dict[str, float]:
    raw = obj.get(key, {})
    m = _require_mapping(raw, key)
    return {str(k): v for k, v in m.items()}


def parse_problem(raw: object) -> RoutingInput:
    """Validate a DESIGN §5.3 problem object into a ``RoutingInput``.

    Errors are ``DataError``s naming the source (index and id) and the field.

    Examples
    --------
    >>> inp = parse_problem({"deficit_usd": 100, "deadline_s": 60, "policy": "cost",
    ...     "sources": [{"id": "a", "tier": 3, "latency_s": 1,
    ...                  "segments": [{"width_usd": 500, "credit_per_usd": 1,
    ...                                "cost_per_usd": 0.001}]}]})
    >>> inp.calls[0].deficit_usd, inp.sources[0].id
    (100.0, 'a')
    """
    obj = _require_mapping(raw, "problem")
    _unknown(obj, _TOP_KEYS, "problem")
    if "sources" not in obj:
        raise DataError("missing required field", field="sources")
    sources_raw = obj["sources"]
    if not isinstance(sources_raw, Sequence) or isinstance(sources_raw, (str, bytes)):
        raise DataError("sources must be a list", field="sources")
    if "calls" in obj:
        if "deficit_usd" in obj or "deadline_s" in obj:
            raise DataError("give either calls or deficit_usd/deadline_s, not both", field="calls")
        calls_raw = obj["calls"]
        if not isinstance(calls_raw, Sequence) or isinstance(calls_raw, str) or not calls_raw:
            raise DataError("calls must be a non-empty list", field="calls")
        calls = []
        for i, c in enumerate(calls_raw):
            cobj = _require_mapping(c, f"calls[{i}]")
            _unknown(cobj, _CALL_KEYS, f"calls[{i}]")
            calls.append(_parse_call(cobj, f"calls[{i}]", f"call-{i}"))
    else:
        calls = [_parse_call(obj, "problem", str(obj.get("call_id", "call")))]
    policy_raw = obj.get("policy", "strict")
    try:
        policy = Policy(policy_raw)
    except ValueError:
        raise DataError(
            "policy must be 'strict' or 'cost'", field="policy", value=policy_raw
        ) from None
    return RoutingInput(
        calls=tuple(calls),
        sources=tuple(_parse_source(s, i) for i, s in enumerate(sources_raw)),
        policy=policy,
        shared_limits_usd=_str_map(obj, "shared_limits_usd"),
        origin_headroom_usd=_str_map(obj, "origin_headroom_usd"),
        api_weight_budget=_str_map(obj, "api_weight_budget"),
        latency_weight_usd_per_usd_s=obj.get(
            "latency_weight_usd_per_usd_s", DEFAULT_LATENCY_WEIGHT_USD_PER_USD_S
        ),
        tie_break_usd_per_usd=obj.get("tie_break_usd_per_usd", DEFAULT_TIER_TIE_BREAK_USD_PER_USD),
        dust_usd=obj.get("dust_usd", DEFAULT_DUST_USD),
        min_step_frac=obj.get("min_step_frac", DEFAULT_MIN_STEP_FRAC),
    )


def _source_to_json(s: CollateralSource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id,
        "tier": int(s.tier),
        "latency_s": s.latency_s,
        "segments": [
            {
                "width_usd": g.width_usd,
                "credit_per_usd": g.credit_per_usd,
                "cost_per_usd": g.cost_per_usd,
            }
            for g in s.segments
        ],
    }
    optional: dict[str, Any] = {
        "preauth_usd": s.preauth_usd,
        "rate_per_s": s.rate_per_s,
        "per_request_usd": s.per_request_usd,
        "available_usd": s.available_usd,
        "origin_pool": s.origin_pool,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if s.fixed_fee_usd:
        out["fixed_fee_usd"] = s.fixed_fee_usd
    if s.min_ticket_usd:
        out["min_ticket_usd"] = s.min_ticket_usd
    if s.api_weight:
        out["api_weight"] = s.api_weight
    if s.venue:
        out["venue"] = s.venue
    if s.origin_debit_per_usd != 1.0:
        out["origin_debit_per_usd"] = s.origin_debit_per_usd
    if s.step_usd != DEFAULT_STEP_USD:
        out["step_usd"] = s.step_usd
    if s.calls is not None:
        out["calls"] = sorted(s.calls)
    if s.groups:
        out["groups"] = list(s.groups)
    if s.mode is not _DEFAULT_MODE[s.tier]:
        out["mode"] = s.mode.value
    return out


def _call_to_json(c: Deficit) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c.id, "deficit_usd": c.deficit_usd, "deadline_s": c.deadline_s}
    for key in ("pool", "target_ratio", "mm_usd"):
        val = getattr(c, key)
        if val is not None:
            out[key] = val
    return out


def input_to_json(inp: RoutingInput) -> dict[str, Any]:
    """Serialise a ``RoutingInput`` back to the problem schema (round-trips ``parse_problem``)."""
    out: dict[str, Any] = {"policy": inp.policy.value}
    if len(inp.calls) == 1:
        c = inp.calls[0]
        out["deficit_usd"] = c.deficit_usd
        out["deadline_s"] = c.deadline_s
        if c.id != "call":
            out["call_id"] = c.id
        for key in ("pool", "target_ratio", "mm_usd"):
            val = getattr(c, key)
            if val is not None:
                out[key] = val
    else:
        out["calls"] = [_call_to_json(c) for c in inp.calls]
    out["sources"] = [_source_to_json(s) for s in inp.sources]
    for key in ("shared_limits_usd", "origin_headroom_usd", "api_weight_budget"):
        val = dict(getattr(inp, key))
        if val:
            out[key] = val
    if inp.latency_weight_usd_per_usd_s != DEFAULT_LATENCY_WEIGHT_USD_PER_USD_S:
        out["latency_weight_usd_per_usd_s"] = inp.latency_weight_usd_per_usd_s
    if inp.tie_break_usd_per_usd != DEFAULT_TIER_TIE_BREAK_USD_PER_USD:
        out["tie_break_usd_per_usd"] = inp.tie_break_usd_per_usd
    if inp.dust_usd != DEFAULT_DUST_USD:
        out["dust_usd"] = inp.dust_usd
    if inp.min_step_frac != DEFAULT_MIN_STEP_FRAC:
        out["min_step_frac"] = inp.min_step_frac
    return out


_MONEY_Q = Decimal("1e-8")
# Enough digits for any sum of booked amounts (each below 1e18, to 1e-8): quantising a total
# never raises InvalidOperation, whatever the number of steps.
_WIDE = Context(prec=60)


def money_str(value: Decimal) -> str:
    """A booked Decimal as a JSON string to 1e-8 USD, like the margin reports' money."""
    return format(value.quantize(_MONEY_Q, context=_WIDE), "f")


def _optional_money(value: Decimal | None) -> str | None:
    return None if value is None else money_str(value)


def _allocation_json(a: Allocation) -> dict[str, Any]:
    return {
        "source": a.source,
        "amount_usd": money_str(a.amount_usd),
        "credit_usd": money_str(a.credit_usd),
        "cost_usd": money_str(a.cost_usd),
        "eta_s": round(a.eta_s, 6),
        "call": a.call,
        "tier": a.tier,
        "mode": a.mode,
        "requests": a.requests,
        "latency_s": a.latency_s,
        "cost_per_credit_usd": money_str(a.cost_per_credit_usd),
        "binding": a.binding,
        "why": a.why,
        "idempotency_key": a.idempotency_key,
    }


def _call_json(c: CallOutcome) -> dict[str, Any]:
    out: dict[str, Any] = {
        "call": c.call,
        "deficit_usd": money_str(c.deficit_usd),
        "credit_usd": money_str(c.credit_usd),
        "cost_usd": money_str(c.cost_usd),
        "uncovered_usd": money_str(c.uncovered_usd),
        "shadow_price_usd_per_usd": c.shadow_price_usd_per_usd,
    }
    if c.dust_usd > 0:
        out["dust_usd"] = money_str(c.dust_usd)
    if c.mm_reduction_usd is not None:
        out["suggested_reduction"] = {
            "mm_reduction_usd": money_str(c.mm_reduction_usd),
            "position_reduction_frac": c.position_reduction_frac,
        }
    return out


def _alternative_json(alt: Alternative | None, *, timings: bool) -> dict[str, Any] | None:
    if alt is None:
        return None
    out: dict[str, Any] = {
        "policy": alt.policy.value,
        "cost_usd": _optional_money(alt.cost_usd),
        "status": alt.status,
    }
    if alt.note:
        out["note"] = alt.note
    if timings and alt.solve_ms is not None:
        out["solve_ms"] = round(alt.solve_ms, 3)
    return out


def plan_to_json(plan: Plan, *, timings: bool = True) -> dict[str, Any]:
    """Serialise a ``Plan`` to the DESIGN §5.3 plan schema (plus explanations).

    Money is a decimal string to 1e-8 USD (``"1029.80000000"``), as in the margin reports;
    rates, seconds and fractions stay JSON numbers. ``timings=False`` writes ``solve_ms`` as
    ``null`` (and leaves out the alternative's), so the same input gives byte-identical JSON
    (``pmr route --as-of``). Asking for the JSON solves the lazy ``alternative``.
    """
    single = len(plan.calls) == 1
    out: dict[str, Any] = {
        "status": plan.status,
        "cost_usd": money_str(plan.cost_usd),
        "credit_usd": money_str(plan.credit_usd),
        "uncovered_usd": money_str(plan.uncovered_usd),
        "allocations": [_allocation_json(a) for a in plan.allocations],
        "solve_ms": round(plan.solve_ms, 3) if timings else None,
        "alternative": _alternative_json(plan.alternative, timings=timings),
        "policy": plan.policy.value,
        "method": plan.method,
        "fallback_reason": plan.fallback_reason,
        "plan_id": plan.plan_id,
        "shadow_price_usd_per_usd": plan.calls[0].shadow_price_usd_per_usd if single else None,
        "calls": [_call_json(c) for c in plan.calls],
        "solves": plan.solves,
        "stages": list(plan.stages),
        "config": plan.config,
        "notes": list(plan.notes),
    }
    if plan.uncovered_usd > 0:
        out["escalation"] = {
            "reason": "deficit cannot be fully covered within the deadline",
            "uncovered_usd": money_str(plan.uncovered_usd),
            "suggestion": "reduce positions in the uncovered pool(s); see calls[].suggested_reduction",
        }
    return out
