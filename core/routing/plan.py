"""Plans: rounding to venue steps, the Decimal coverage re-check, top-ups, ordering, keys.

The optimiser works in float64; money is booked in ``Decimal``. ``finalise`` turns a raw
solution into a ``Plan`` that can be executed as is:

1. round every (call, source) amount *down* to the source's step (never above a cap);
2. keep minimum tickets (a used source below its ticket is lifted to it, or dropped);
3. re-compute credit and cost in ``Decimal`` from the segments;
4. top up any call still short from the cheapest piece with room left (steps rounded up);
   then give back whole steps of over-cover while every call stays covered;
5. order steps by expected completion and give each a deterministic idempotency key,
   sha256(plan id, call, source, amount), so a re-sent step is recognised (DESIGN §7).

Each allocation says why it is there (tier, cost per credited USD, ETA, binding limit); each
call carries the shadow price of its cover constraint: what one more USD of coverage would
cost at the margin of this plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np

from core.routing.arrays import Arrays, Structure
from core.routing.policies import RawSolution
from core.routing.room import Room
from core.routing.sources import CollateralSource, Policy, RoutingInput

__all__ = [
    "Allocation",
    "Alternative",
    "CallOutcome",
    "Plan",
    "finalise",
    "plan_id_of",
]

_ZERO = Decimal(0)
DEFAULT_TARGET_RATIO = 1.5
_EPS_USD = 1e-6


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _floor_step(amount: float, step: float, *, forgiving: bool = True) -> Decimal:
    """Round down to a multiple of ``step``; solver noise next to a step snaps to that step.

    The solver's feasibility tolerance (and the strict policy's floor tolerance, ~1e-9 of the
    deficit) leaves amounts such as 299.9999987 for 300 or 1,507,700.0025 for 1,507,700: an
    amount within that noise of a step is that step; anything else rounds down. Caps are
    re-applied by the caller.
    """
    step_d = _dec(step)
    amount_d = _dec(amount)
    nearest = (amount_d / step_d).to_integral_value(rounding=ROUND_HALF_EVEN)
    slack = _dec(1e-5 + 1e-8 * abs(amount)) if forgiving else _ZERO
    if abs(amount_d - nearest * step_d) <= slack:
        return max(_ZERO, nearest * step_d)
    n = (amount_d / step_d).to_integral_value(rounding=ROUND_FLOOR)
    return max(_ZERO, n * step_d)


def _ceil_step(amount: float, step: float) -> Decimal:
    step_d = _dec(step)
    n = (_dec(max(amount - 1e-9, 0.0)) / step_d).to_integral_value(rounding=ROUND_CEILING)
    return n * step_d


@dataclass(frozen=True, slots=True)
class Allocation:
    """One step of a plan: move ``amount_usd`` from ``source`` for ``call``."""

    call: str
    source: str
    tier: int
    mode: str
    amount_usd: Decimal
    credit_usd: Decimal
    cost_usd: Decimal
    eta_s: float
    requests: int
    latency_s: float
    binding: str
    idempotency_key: str
    origin_pool: str | None = None
    venue: str = ""

    @property
    def cost_per_credit_usd(self) -> Decimal:
        if self.credit_usd == 0:
            return _ZERO
        return self.cost_usd / self.credit_usd

    @property
    def why(self) -> str:
        return (
            f"tier {self.tier} ({self.mode}): {float(self.cost_per_credit_usd):.6f} USD per "
            f"credited USD, ETA {self.eta_s:.3g} s, bound by {self.binding}"
        )


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """Coverage of one call, the marginal cost of more, and what to cut if short."""

    call: str
    deficit_usd: Decimal
    credit_usd: Decimal
    cost_usd: Decimal
    uncovered_usd: Decimal
    shadow_price_usd_per_usd: float | None
    mm_reduction_usd: Decimal | None = None
    position_reduction_frac: float | None = None


@dataclass(frozen=True, slots=True)
class Alternative:
    """What the other policy would have done (cost and status only)."""

    policy: Policy
    cost_usd: Decimal | None
    status: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    """A routing plan: DESIGN §5.3 output plus explanations, keys and provenance."""

    status: str
    policy: Policy
    cost_usd: Decimal
    credit_usd: Decimal
    uncovered_usd: Decimal
    allocations: tuple[Allocation, ...]
    calls: tuple[CallOutcome, ...]
    solve_ms: float
    alternative: Alternative | None
    method: str
    fallback_reason: str | None
    plan_id: str
    solves: int
    stages: tuple[str, ...]
    config: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def covered(self) -> bool:
        return self.uncovered_usd == 0


def plan_id_of(canonical_problem: dict[str, Any]) -> str:
    """A stable id for a problem (with its policy): the prefix of keys and plan rows."""
    blob = json.dumps(canonical_problem, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _idempotency_key(plan_id: str, call: str, source: str, amount: Decimal) -> str:
    blob = f"{plan_id}|{call}|{source}|{amount.normalize()}"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _piece_split(
    s: CollateralSource, amount: Decimal, start_fill: Decimal
) -> list[tuple[int, Decimal]]:
    """Split ``amount`` over the segments of ``s`` starting ``start_fill`` USD in."""
    out: list[tuple[int, Decimal]] = []
    pos = _ZERO
    left = amount
    for k, seg in enumerate(s.segments):
        width = _dec(seg.width_usd)
        seg_lo, seg_hi = pos, pos + width
        pos = seg_hi
        if start_fill >= seg_hi or left <= 0:
            continue
        free = seg_hi - max(seg_lo, start_fill)
        take = min(free, left)
        out.append((k, take))
        left -= take
    if left > 0 and out:
        # Float-to-Decimal noise at the very end of the last segment: book it on that segment.
        k, take = out[-1]
        out[-1] = (k, take + left)
    elif left > 0:
        out.append((len(s.segments) - 1, left))
    return out


def _binding(inp: RoutingInput, st: Structure, room: Room, d: int, j: int, amount: float) -> str:
    s = inp.sources[j]
    call = inp.calls[d]
    slack = s.step_usd + _EPS_USD * max(1.0, amount)
    if s.min_ticket_usd > 0 and abs(amount - s.min_ticket_usd) <= slack:
        return "min_ticket"
    limits = room.limits(d, j)
    tight = [name for name, left in limits.items() if left <= slack]
    if "capacity" in tight or "capacity_all_calls" in tight:
        cap = s.capacity_usd(call.deadline_s)
        if s.available_usd is not None and cap >= s.available_usd - slack:
            return "available"
        if s.preauth_usd is not None and cap >= s.preauth_usd - slack:
            return "preauth_limit"
        if cap < s.total_width_usd - slack:
            return "deadline_rate_limit"
        return "available"
    if "segments" in tight:
        return "available"
    for name in tight:
        return name
    return "deficit_covered"


def _shadow_price(
    inp: RoutingInput, st: Structure, arrays: Arrays, room: Room, used: np.ndarray, d: int
) -> float | None:
    """Cost of one more USD of coverage for call d at the margin of the plan.

    The cheapest cost per credited USD among sources with room left (a source not yet used pays
    its fixed fee on that USD too); ``None`` when nothing can add coverage. For an LP without
    binaries this equals the dual of the cover constraint when λ = ε = 0 (tested).
    """
    best: float | None = None
    rooms = room.room_vector(d)
    for j in (int(k) for k in np.flatnonzero(rooms > _EPS_USD)):
        s = inp.sources[j]
        p = room.next_piece(j)
        if p is None or arrays.credit[d, p] <= 0:
            continue
        unit = arrays.cost[p]
        if s.needs_binary and not used[d, j]:
            if rooms[j] < s.min_ticket_usd:
                continue
            unit += s.fixed_fee_usd
        price = unit / arrays.credit[d, p]
        if best is None or price < best:
            best = price
    return best


def finalise(
    inp: RoutingInput,
    st: Structure,
    arrays: Arrays,
    raw: RawSolution,
    *,
    plan_id: str,
    solve_ms: float,
    method: str,
    fallback_reason: str | None = None,
    alternative: Alternative | None = None,
    config: str = "",
) -> Plan:
    """Round, re-check in Decimal, top up, order and key a raw solution into a ``Plan``."""
    C, J = st.n_calls, st.n_sources
    X = st.per_source(raw.x)  # (C, J) floats
    amounts: dict[tuple[int, int], Decimal] = {}
    for d in range(C):
        for j in range(J):
            s = inp.sources[j]
            if X[d, j] <= _EPS_USD:
                continue
            x_dj = float(X[d, j])
            # A source used up to its capacity less solver tolerance (the strict floors and
            # the cover are relaxed by ~1e-9 of the deficit, and HiGHS's primal feasibility
            # tolerance is 1e-7 of a row's scale) is used up to its capacity.
            if arrays.cap[d, j] - x_dj <= 1e-5 + 1e-7 * arrays.cap[d, j]:
                x_dj = float(arrays.cap[d, j])
            amt = _floor_step(x_dj, s.step_usd)
            cap = _dec(arrays.cap[d, j])
            while amt > cap and amt > 0:
                amt -= _dec(s.step_usd)
            if 0 < amt < _dec(s.min_ticket_usd):
                lifted = _ceil_step(s.min_ticket_usd, s.step_usd)
                amt = lifted if lifted <= cap else _ZERO
            if amt > 0:
                amounts[(d, j)] = amt

    def x_of(amts: dict[tuple[int, int], Decimal]) -> np.ndarray:
        x = np.zeros((C, st.n_pieces))
        fill = np.zeros(J)
        for (d, j), amt in sorted(amts.items()):
            start = room_template.piece_range[j][0]
            for k, part in _piece_split(inp.sources[j], amt, _dec(fill[j])):
                x[d, start + k] += float(part)
            fill[j] += float(amt)
        return x

    room_template = Room(inp, st, arrays)

    def credit_cost(
        amts: dict[tuple[int, int], Decimal],
    ) -> tuple[dict[tuple[int, int], tuple[Decimal, Decimal]], np.ndarray]:
        fill: dict[int, Decimal] = {}
        out: dict[tuple[int, int], tuple[Decimal, Decimal]] = {}
        for (d, j), amt in sorted(amts.items()):
            s = inp.sources[j]
            credit = cost = _ZERO
            for k, part in _piece_split(s, amt, fill.get(j, _ZERO)):
                seg = s.segments[k]
                credit += part * _dec(seg.credit_per_usd)
                cost += part * _dec(seg.cost_per_usd)
            if s.fixed_fee_usd > 0:
                cost += _dec(s.fixed_fee_usd)
            fill[j] = fill.get(j, _ZERO) + amt
            out[(d, j)] = (credit, cost)
        per_call = np.zeros(C, dtype=object)
        for d in range(C):
            per_call[d] = sum((v[0] for (dd, _), v in out.items() if dd == d), _ZERO)
        return out, per_call

    deficits = [_dec(c.deficit_usd) for c in inp.calls]
    booked, credit_per_call = credit_cost(amounts)
    # Top-up: a call short after rounding takes the cheapest piece with room, in steps.
    for d in range(C):
        for _ in range(2 * J + 2):
            short = deficits[d] - credit_per_call[d]
            if short <= 0:
                break
            room = Room.from_solution(inp, st, arrays, x_of(amounts))
            used = np.zeros((C, J), dtype=bool)
            for dd, jj in amounts:
                used[dd, jj] = True
            # A top-up that closes the gap is ranked by its total cost (surplus cover is worth
            # nothing); one that cannot close it alone, by cost per credited USD.
            best: tuple[tuple[int, float], int, Decimal] | None = None
            rooms = room.room_vector(d)
            for j in (int(k) for k in np.flatnonzero(rooms > _EPS_USD)):
                s = inp.sources[j]
                avail = float(rooms[j])
                p = room.next_piece(j)
                if p is None or arrays.credit[d, p] <= 0:
                    continue
                need = float(short) / arrays.credit[d, p]
                add = _ceil_step(need, s.step_usd)
                fee = 0.0
                if not used[d, j]:
                    add = max(add, _ceil_step(s.min_ticket_usd, s.step_usd))
                    fee = s.fixed_fee_usd
                add = min(add, _floor_step(avail, s.step_usd, forgiving=False))
                if add <= 0 or (not used[d, j] and add < _dec(s.min_ticket_usd)):
                    continue
                total = arrays.cost[p] * float(add) + fee
                closes = arrays.credit[d, p] * float(add) >= float(short) - 1e-12
                rank = (0, total) if closes else (1, total / (arrays.credit[d, p] * float(add)))
                if best is None or rank < best[0]:
                    best = (rank, j, add)
            if best is None:
                break
            _, j, add = best
            amounts[(d, j)] = amounts.get((d, j), _ZERO) + add
            booked, credit_per_call = credit_cost(amounts)

    # Trim: snapping to steps and top-ups can over-cover; give back whole steps from the
    # dearest allocations while every call stays covered in Decimal (a trimmed source keeps
    # its minimum ticket, or is dropped whole and its fee saved).
    for d in range(C):
        mine = [k for k in amounts if k[0] == d]
        # strict gives back the last tier first (tier order is a hard rule), cost the dearest
        mine.sort(
            key=lambda k: (
                int(inp.sources[k[1]].tier) if inp.policy is Policy.STRICT else 0,
                booked[k][1] / booked[k][0] if booked[k][0] else _ZERO,
            ),
            reverse=True,
        )
        for key in mine:
            excess = credit_per_call[d] - deficits[d]
            if excess <= 0:
                break
            s = inp.sources[key[1]]
            step = _dec(s.step_usd)
            lowest = _dec(min(g.credit_per_usd for g in s.segments))
            amt = amounts[key]
            cut = (excess / lowest / step).to_integral_value(rounding=ROUND_FLOOR) * step
            if cut >= amt:
                cut = amt
            elif amt - cut < _dec(s.min_ticket_usd):
                cut = amt - _ceil_step(s.min_ticket_usd, s.step_usd)
            if cut <= 0:
                continue
            trial = dict(amounts)
            if cut == amt:
                del trial[key]
            else:
                trial[key] = amt - cut
            booked_t, credit_t = credit_cost(trial)
            if all(
                credit_t[dd] >= deficits[dd]
                for dd in range(C)
                if credit_per_call[dd] >= deficits[dd]
            ):
                amounts, booked, credit_per_call = trial, booked_t, credit_t

    final_x = x_of(amounts)
    room = Room.from_solution(inp, st, arrays, final_x)
    used = np.zeros((C, J), dtype=bool)
    for d, j in amounts:
        used[d, j] = True
    allocations: list[Allocation] = []
    for (d, j), amt in amounts.items():
        s = inp.sources[j]
        credit, cost = booked[(d, j)]
        allocations.append(
            Allocation(
                call=inp.calls[d].id,
                source=s.id,
                tier=int(s.tier),
                mode=s.mode.value,
                amount_usd=amt,
                credit_usd=credit,
                cost_usd=cost,
                eta_s=s.eta_s(float(amt)),
                requests=s.requests_for(float(amt)),
                latency_s=s.latency_s,
                binding=_binding(inp, st, room, d, j, float(amt)),
                idempotency_key=_idempotency_key(plan_id, inp.calls[d].id, s.id, amt),
                origin_pool=s.origin_pool,
                venue=s.venue,
            )
        )
    allocations.sort(key=lambda a: (a.eta_s, a.call, a.source))
    outcomes: list[CallOutcome] = []
    for d, call in enumerate(inp.calls):
        credit_d = credit_per_call[d]
        uncovered = max(_ZERO, deficits[d] - credit_d)
        mm_cut: Decimal | None = None
        frac: float | None = None
        if uncovered > 0:
            # deficit = r*·MM − E, so cutting MM by uncovered / r* closes the gap (DESIGN §3.2);
            # r* defaults to the DESIGN §3.3 target of 1.5 when the call does not say.
            ratio = call.target_ratio if call.target_ratio is not None else DEFAULT_TARGET_RATIO
            mm_cut = uncovered / _dec(ratio)
            if call.mm_usd is not None:
                frac = min(1.0, float(mm_cut) / call.mm_usd)
        outcomes.append(
            CallOutcome(
                call=call.id,
                deficit_usd=deficits[d],
                credit_usd=credit_d,
                cost_usd=sum((a.cost_usd for a in allocations if a.call == call.id), _ZERO),
                uncovered_usd=uncovered,
                shadow_price_usd_per_usd=_shadow_price(inp, st, arrays, room, used, d),
                mm_reduction_usd=mm_cut,
                position_reduction_frac=frac,
            )
        )
    total_credit = sum((o.credit_usd for o in outcomes), _ZERO)
    total_uncovered = sum((o.uncovered_usd for o in outcomes), _ZERO)
    if total_uncovered == 0:
        status = "optimal"
    elif total_credit > 0:
        status = "partial"
    else:
        status = "infeasible"
    return Plan(
        status=status,
        policy=inp.policy,
        cost_usd=sum((a.cost_usd for a in allocations), _ZERO),
        credit_usd=total_credit,
        uncovered_usd=total_uncovered,
        allocations=tuple(allocations),
        calls=tuple(outcomes),
        solve_ms=solve_ms,
        alternative=alternative,
        method=method,
        fallback_reason=fallback_reason,
        plan_id=plan_id,
        solves=raw.solves,
        stages=raw.stages,
        config=config,
    )
