"""``finalise``: a raw solution in, a booked, ordered, explained ``Plan`` out.

A short driver over the finishing steps of ``core.routing.finish`` (snap to venue steps, top
up, trim over-cover, fold steps not worth a request, snap to whole asset steps, re-check in
Decimal), then it orders the steps by expected completion, gives each step its legs
(``core.routing.legs``) and explains each step and each call. ``problem_id_of`` fingerprints
the problem a plan answers.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from core.routing.finish import (
    DEFAULT_TARGET_RATIO,
    Amounts,
    Booked,
    Finisher,
    allocation_binding,
    dec,
    fold_small_steps,
    shadow_price,
    snap_to_steps,
    top_up,
    trim_over_cover,
    usd_text,
)
from core.routing.legs import LegTemplate, book_usd, floor_to_step, legs_for, request_chunks
from core.routing.plan import Allocation, CallOutcome, LazyAlternative, Plan
from core.routing.policies import RawSolution
from core.routing.room import Room
from core.routing.sources import RoutingInput

__all__ = ["finalise", "problem_id_of", "snap_to_assets"]

_ZERO = Decimal(0)


def _leg_names(g: LegTemplate) -> list[str | None]:
    return [
        g.kind.value,
        g.venue,
        g.from_wallet.value,
        g.to_wallet.value,
        g.asset,
        str(g.price_usd),
        str(g.asset_step),
        g.route_id,
        g.to_venue,
        g.to_asset,
    ]


def problem_id_of(inp: RoutingInput) -> str:
    """A fingerprint of a problem with its policy: equal inputs, equal fingerprints.

    Not an identity for a plan or a key for a transfer: the same state planned for two margin
    calls has one fingerprint, and the store names plans by (margin call, version) instead
    (``core.ledger.plans``). It says which problem a recorded plan solved.

    sha256 over the problem's canonical form: its names, tags, legs and limits' keys as compact
    JSON, and every number as IEEE-754 float64 bytes in a fixed order (the same numbers give
    the same id whether the problem file wrote them as numbers or strings). Hashing the raw
    numbers instead of their decimal text keeps this at ~2 ms for 1,000 sources (printing
    every float as JSON took 15–20 ms, half a route). First 16 hex digits.
    """
    nan = float("nan")

    def opt(v: float | None) -> float:
        return nan if v is None else v

    names: list[Any] = [inp.policy.value, "v3"]
    numbers: list[float] = [
        inp.latency_weight_usd_per_usd_s,
        inp.tie_break_usd_per_usd,
        inp.dust_usd,
        inp.min_step_frac,
    ]
    for c in inp.calls:
        names.append([c.id, c.pool])
        numbers += [c.deficit_usd, c.deadline_s, opt(c.target_ratio), opt(c.mm_usd)]
    for key in ("shared_limits_usd", "origin_headroom_usd", "api_weight_budget"):
        limits = sorted(getattr(inp, key).items())
        names.append([k for k, _ in limits])
        numbers += [v for _, v in limits]
    for s in inp.sources:
        calls = None if s.calls is None else sorted(s.calls)
        entry: list[Any] = [s.id, s.mode.value, s.venue, s.origin_pool, calls, s.groups]
        if s.api_weights:  # the budgets' names; their weights go with the numbers
            entry.append([n for n, _ in s.api_weights])
            numbers += [w for _, w in s.api_weights]
        if s.legs:
            entry.append([_leg_names(g) for g in s.legs])
            numbers += [g.latency_s for g in s.legs]
        names.append(entry)
        numbers += [
            float(s.tier),
            s.latency_s,
            opt(s.preauth_usd),
            opt(s.rate_per_s),
            opt(s.per_request_usd),
            s.fixed_fee_usd,
            s.min_ticket_usd,
            opt(s.available_usd),
            s.origin_debit_per_usd,
            s.step_usd,
            float(len(s.segments)),
        ]
        for g in s.segments:
            numbers += [g.width_usd, g.credit_per_usd, g.cost_per_usd]
    digest = hashlib.sha256(json.dumps(names, separators=(",", ":")).encode())
    digest.update(np.asarray(numbers, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def snap_to_assets(f: Finisher, amounts: Amounts) -> tuple[Amounts, list[str]]:
    """Round each step with legs down to whole steps of its first leg's asset.

    A step moves ``amount / price`` of an asset, which the venue takes in multiples of the
    asset's step: the USD amount is re-derived from the rounded asset amount (amount × price),
    so what is booked is what is sent. Sources built from a desk have USD steps that are whole
    asset steps (``core.routing.from_state``), and this changes nothing; a problem file whose
    ``step_usd`` does not match its legs is rounded here, and the plan says so. A step that
    rounds to nothing is dropped.
    """
    out: Amounts = {}
    notes: list[str] = []
    for key, amt in amounts.items():
        s = f.inp.sources[key[1]]
        if not s.legs:
            out[key] = amt
            continue
        first = s.legs[0]
        snapped = book_usd(floor_to_step(amt / first.price_usd, first.asset_step) * first.price_usd)
        if snapped != amt:
            notes.append(
                f"call {f.inp.calls[key[0]].id}: step {s.id} of {usd_text(amt)} USD rounded "
                f"down to {usd_text(snapped)} USD, whole steps of {first.asset_step.normalize()} "
                f"{first.asset} at {usd_text(first.price_usd)} USD"
            )
        if snapped > 0:
            out[key] = snapped
    return out, notes


def _requests_of(f: Finisher, key: tuple[int, int], amt: Decimal) -> tuple[Decimal, ...]:
    """The USD amounts of the requests that carry step ``key`` (``amt``): one unless its source
    has legs and a per-request cap the step is above (``core.routing.legs.request_chunks``);
    ``()`` when one asset step is already above the cap."""
    s = f.inp.sources[key[1]]
    if not s.legs or s.per_request_usd is None:
        return (amt,)
    return request_chunks(s.legs, amt, dec(s.per_request_usd), min_ticket_usd=dec(s.min_ticket_usd))


def _split_note(f: Finisher, key: tuple[int, int], amt: Decimal, parts: tuple[Decimal, ...]) -> str:
    s = f.inp.sources[key[1]]
    first = s.legs[0]
    where = f"call {f.inp.calls[key[0]].id}: step {s.id} of {usd_text(amt)} USD"
    cap = usd_text(dec(s.per_request_usd or 0.0))
    if not parts:
        return (
            f"{where} has no legs: one step of {first.asset_step.normalize()} {first.asset} "
            f"is worth more than its per-request cap of {cap} USD"
        )
    note = f"{where} is {len(parts)} requests of at most {cap} USD each (its per-request cap)"
    counted = s.requests_for(float(amt))
    if len(parts) > counted:
        note += (
            f"; the router counted {counted}: the cap is not a whole number of "
            f"{first.asset_step.normalize()} {first.asset} steps"
        )
    return note


def _allocations_in_order(
    f: Finisher, amounts: Amounts, booked: Booked, room: Room
) -> tuple[list[Allocation], list[str]]:
    """Every step with its explanation and legs, ordered by expected completion, and a note
    for each step cut into several requests.

    A step above its source's per-request cap becomes one step per request (the executor and
    the pre-authorisation gate see each request as its own step, leg 0 moving the step's
    amount): the k-th completes at the source's ETA for k requests, and the steps' credits
    and costs add up exactly to the uncut step's (``Finisher.book_parts``).
    """
    out: list[tuple[tuple[float, str, str, int], Allocation]] = []
    notes: list[str] = []
    for (d, j), amt in amounts.items():
        s = f.inp.sources[j]
        parts = _requests_of(f, (d, j), amt)
        if len(parts) != 1:
            notes.append(_split_note(f, (d, j), amt, parts))
        binding = allocation_binding(f, room, d, j, float(amt))
        if len(parts) <= 1:
            figures = [(amt, *booked.step[(d, j)], s.eta_s(float(amt)), s.requests_for(float(amt)))]
        else:
            booked_parts = f.book_parts(amounts, booked, (d, j), parts)
            figures = [
                (part, credit, cost, s.request_eta_s(k), 1)
                for k, (part, (credit, cost)) in enumerate(zip(parts, booked_parts, strict=True), 1)
            ]
        for k, (part, credit, cost, eta, requests) in enumerate(figures):
            legs, _ = legs_for(s.legs, part, cost) if s.legs and parts else ((), part)
            alloc = Allocation(
                call=f.inp.calls[d].id,
                source=s.id,
                tier=int(s.tier),
                mode=s.mode.value,
                amount_usd=part,
                credit_usd=credit,
                cost_usd=cost,
                eta_s=eta,
                requests=requests,
                latency_s=s.latency_s,
                binding=binding,
                origin_pool=s.origin_pool,
                venue=s.venue,
                legs=legs,
            )
            out.append(((eta, alloc.call, alloc.source, k), alloc))
    out.sort(key=lambda pair: pair[0])
    return [a for _, a in out], notes


def _suggested_reduction(
    inp: RoutingInput, d: int, uncovered: Decimal
) -> tuple[Decimal | None, float | None]:
    """deficit = r*·MM − E, so cutting MM by uncovered / r* closes the gap (DESIGN §3.2); r*
    defaults to the DESIGN §3.3 target of 1.5 when the call does not say."""
    if uncovered <= 0:
        return None, None
    call = inp.calls[d]
    ratio = call.target_ratio if call.target_ratio is not None else DEFAULT_TARGET_RATIO
    mm_cut = book_usd(uncovered / dec(ratio))
    frac = None if call.mm_usd is None else min(1.0, float(mm_cut) / call.mm_usd)
    return mm_cut, frac


def _call_outcomes(
    f: Finisher,
    amounts: Amounts,
    booked: Booked,
    room: Room,
    deficits: list[Decimal],
    notes: list[str],
) -> list[CallOutcome]:
    """Per call: coverage (a remainder below the dust threshold counts as covered), the
    shadow price of more cover, and the reduction that closes what is left."""
    used: npt.NDArray[np.bool_] = np.zeros((f.st.n_calls, f.st.n_sources), dtype=bool)
    for d, j in amounts:
        used[d, j] = True
    out: list[CallOutcome] = []
    for d, call in enumerate(f.inp.calls):
        credit = booked.call_credit[d]
        lacking = max(_ZERO, deficits[d] - credit)
        dust = lacking if 0 < lacking < f.dust[d] else _ZERO
        if dust > 0 and f.targets[d] > 0:
            notes.append(
                f"call {call.id}: {usd_text(dust)} USD left uncovered is below the dust "
                f"threshold of {usd_text(f.dust[d])} USD (no source has room for one more "
                f"step): counted as covered"
            )
        uncovered = lacking - dust
        mm_cut, frac = _suggested_reduction(f.inp, d, uncovered)
        out.append(
            CallOutcome(
                call=call.id,
                deficit_usd=deficits[d],
                credit_usd=credit,
                cost_usd=sum((c for (dd, _), (_, c) in booked.step.items() if dd == d), _ZERO),
                uncovered_usd=uncovered,
                shadow_price_usd_per_usd=shadow_price(f, room, used, d),
                deadline_s=call.deadline_s,
                mm_reduction_usd=mm_cut,
                position_reduction_frac=frac,
                dust_usd=dust,
            )
        )
    return out


def finalise(
    f: Finisher,
    raw: RawSolution,
    *,
    deficits: list[Decimal],
    problem_id: str,
    solve_ms: float,
    method: str,
    fallback_reason: str | None = None,
    alternative: LazyAlternative | None = None,
    config: str = "",
    notes: tuple[str, ...] = (),
) -> Plan:
    """Snap, top up, trim, fold, snap to assets, re-check, order and explain a raw solution.

    ``deficits`` are the calls' deficits as asked; ``f.targets`` what must be credited (0 for
    a call covered as dust).
    """
    amounts = snap_to_steps(f, f.st.per_source(raw.x))
    amounts = top_up(f, amounts)
    amounts = trim_over_cover(f, amounts)
    amounts, fold_notes = fold_small_steps(f, amounts)  # also what trimming left tiny
    if fold_notes:
        amounts = trim_over_cover(f, amounts)  # what folding topped up past the need
    amounts, asset_notes = snap_to_assets(f, amounts)
    booked = f.recheck(amounts)
    room = f.room(amounts)
    allocations, split_notes = _allocations_in_order(f, amounts, booked, room)
    all_notes = [*notes, *fold_notes, *asset_notes, *split_notes]
    outcomes = _call_outcomes(f, amounts, booked, room, deficits, all_notes)
    total_credit = sum((o.credit_usd for o in outcomes), _ZERO)
    total_uncovered = sum((o.uncovered_usd for o in outcomes), _ZERO)
    status = "optimal" if total_uncovered == 0 else "partial" if total_credit > 0 else "infeasible"
    return Plan(
        status=status,
        policy=f.inp.policy,
        cost_usd=booked.cost_usd,
        credit_usd=total_credit,
        uncovered_usd=total_uncovered,
        allocations=tuple(allocations),
        calls=tuple(outcomes),
        solve_ms=solve_ms,
        other_policy=alternative,
        method=method,
        fallback_reason=fallback_reason,
        problem_id=problem_id,
        solves=raw.solves,
        stages=raw.stages,
        config=config,
        notes=tuple(all_notes),
    )
