"""The steps that turn a raw float solution into executable, booked plan steps.

The optimiser works in float64; money is booked in ``Decimal``. ``finalise.finalise`` calls these
in order:

1. ``snap_to_steps``      round every (call, source) amount *down* to the source's step, never
                          above a cap; a used source below its minimum ticket is lifted to it
                          or dropped;
2. ``Finisher.recheck``   re-compute credit and cost in ``Decimal`` from the segments (after
                          every change below);
3. ``top_up``             a call still short takes the cheapest piece with room, in steps;
4. ``trim_over_cover``    give back whole steps of over-cover while every call stays covered;
5. ``fold_small_steps``   a step below its minimum useful ticket (``core.routing.worth``) is
                          folded into the call's other steps, or dropped when what it leaves
                          is dust (then trim again what folding topped up past the need);
6. ``allocations_in_order`` the steps with their explanations and legs, ordered by expected
                          completion (``core.routing.finalise``, after ``snap_to_assets``);
7. ``call_outcomes``      per call: coverage, dust forgiven, the shadow price of more cover and
                          the position reduction that would close what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext

import numpy as np
import numpy.typing as npt

from core.routing.arrays import Arrays, Structure
from core.routing.legs import book_usd
from core.routing.room import Room
from core.routing.sources import CollateralSource, Policy, RoutingInput
from core.routing.worth import useful_credit_usd

__all__ = [
    "DEFAULT_TARGET_RATIO",
    "Booked",
    "Finisher",
    "allocation_binding",
    "ceil_step",
    "floor_step",
    "fold_small_steps",
    "shadow_price",
    "snap_to_steps",
    "top_up",
    "trim_over_cover",
    "usd_text",
]

Key = tuple[int, int]  # (call d, source j)
Amounts = dict[Key, Decimal]
FloatArray = npt.NDArray[np.float64]

_ZERO = Decimal(0)
DEFAULT_TARGET_RATIO = 1.5
_EPS_USD = 1e-6
# Enough digits for a difference of booked figures (each below 1e18, to 1e-18) to be exact.
_WIDE = Context(prec=60)


def dec(value: float) -> Decimal:
    """A float as the Decimal of its shortest repr (no binary noise)."""
    return Decimal(repr(float(value)))


def usd_text(value: Decimal) -> str:
    """A Decimal for a message: plain digits, no exponent, no trailing zeros (0.000000000001)."""
    return format(value.normalize(), "f")


def floor_step(amount: float, step: float, *, forgiving: bool = True) -> Decimal:
    """Round down to a multiple of ``step``; solver noise next to a step snaps to that step.

    The solver's feasibility tolerance (and the strict policy's floor tolerance, ~1e-9 of the
    deficit) leaves amounts such as 299.9999987 for 300 or 1,507,700.0025 for 1,507,700: an
    amount within that noise of a step is that step; anything else rounds down. Caps are
    re-applied by the caller.
    """
    step_d = dec(step)
    amount_d = dec(amount)
    nearest = (amount_d / step_d).to_integral_value(rounding=ROUND_HALF_EVEN)
    slack = dec(1e-5 + 1e-8 * abs(amount)) if forgiving else _ZERO
    if abs(amount_d - nearest * step_d) <= slack:
        return max(_ZERO, nearest * step_d)
    n = (amount_d / step_d).to_integral_value(rounding=ROUND_FLOOR)
    return max(_ZERO, n * step_d)


def ceil_step(amount: float, step: float) -> Decimal:
    """Round up to a multiple of ``step`` (a hair of float noise above a step does not count)."""
    step_d = dec(step)
    n = (dec(max(amount - 1e-9, 0.0)) / step_d).to_integral_value(rounding=ROUND_CEILING)
    return n * step_d


_SegmentsD = tuple[tuple[Decimal, Decimal, Decimal], ...]  # (width, credit, cost) per segment


def segments_dec(s: CollateralSource) -> _SegmentsD:
    """A source's segments in ``Decimal`` (converted once per plan, not per re-check)."""
    return tuple((dec(g.width_usd), dec(g.credit_per_usd), dec(g.cost_per_usd)) for g in s.segments)


def piece_split(
    segs: _SegmentsD, amount: Decimal, start_fill: Decimal
) -> list[tuple[int, Decimal]]:
    """Split ``amount`` over segments ``segs`` (widths first) starting ``start_fill`` USD in."""
    out: list[tuple[int, Decimal]] = []
    pos = _ZERO
    left = amount
    for k, (width, _, _) in enumerate(segs):
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
        out.append((len(segs) - 1, left))
    return out


@dataclass(frozen=True, slots=True)
class Booked:
    """Decimal credit and cost of each step, and the credit per call."""

    step: dict[Key, tuple[Decimal, Decimal]]
    call_credit: tuple[Decimal, ...]

    @property
    def cost_usd(self) -> Decimal:
        return sum((cost for _, cost in self.step.values()), _ZERO)


class Finisher:
    """What every finishing step needs: the input, its arrays, and each call's target credit.

    ``targets`` is what each call must be credited (its deficit, or 0 for a call covered as
    dust); ``dust`` the per-call dust threshold (``core.routing.worth``).
    """

    def __init__(
        self,
        inp: RoutingInput,
        st: Structure,
        arrays: Arrays,
        targets: list[Decimal],
        dust: FloatArray,
    ) -> None:
        self.inp = inp
        self.st = st
        self.arrays = arrays
        self.targets = targets
        self.dust = [dec(x) for x in dust]
        starts = st.piece_starts
        self.piece_start = [int(x) for x in starts]
        self.step_usd = np.array([s.step_usd for s in inp.sources])
        self.min_ticket_usd = np.array([s.min_ticket_usd for s in inp.sources])
        self.fixed_fee_usd = np.array([s.fixed_fee_usd for s in inp.sources])
        self._segs: dict[int, _SegmentsD] = {}

    @property
    def n_calls(self) -> int:
        return self.st.n_calls

    def segs(self, j: int) -> _SegmentsD:
        """Source ``j``'s segments in ``Decimal``, converted on first use (few sources are)."""
        segs = self._segs.get(j)
        if segs is None:
            segs = self._segs[j] = segments_dec(self.inp.sources[j])
        return segs

    def x_of(self, amounts: Amounts) -> FloatArray:
        """Amounts as the optimiser's x (calls × pieces), filling segments in order."""
        x = np.zeros((self.st.n_calls, self.st.n_pieces))
        fill: dict[int, Decimal] = {}
        for (d, j), amt in sorted(amounts.items()):
            start = self.piece_start[j]
            for k, part in piece_split(self.segs(j), amt, fill.get(j, _ZERO)):
                x[d, start + k] += float(part)
            fill[j] = fill.get(j, _ZERO) + amt
        return x

    def room(self, amounts: Amounts) -> Room:
        return Room.from_solution(self.inp, self.st, self.arrays, self.x_of(amounts))

    def _raw(self, j: int, amount: Decimal, start_fill: Decimal) -> tuple[Decimal, Decimal]:
        """Unbooked credit and cost of ``amount`` of source ``j`` from ``start_fill`` USD in
        (its segments filled in order; no fee)."""
        segs = self.segs(j)
        credit = cost = _ZERO
        for k, part in piece_split(segs, amount, start_fill):
            credit += part * segs[k][1]
            cost += part * segs[k][2]
        return credit, cost

    def recheck(self, amounts: Amounts) -> Booked:
        """Credit and cost of every step in ``Decimal``, from the segments (fees included),
        booked to 1e-18 USD (``core.routing.legs.book_usd``).

        A source serving several calls fills its segments call by call, in call order: a
        later call's step starts where the earlier calls' steps ended (``fill_before``).
        """
        fill: dict[int, Decimal] = {}
        step: dict[Key, tuple[Decimal, Decimal]] = {}
        per_call = [_ZERO] * self.n_calls
        for (d, j), amt in sorted(amounts.items()):
            credit, cost = self._raw(j, amt, fill.get(j, _ZERO))
            fee = self.inp.sources[j].fixed_fee_usd
            if fee > 0:
                cost += dec(fee)
            fill[j] = fill.get(j, _ZERO) + amt
            credit, cost = book_usd(credit), book_usd(cost)
            step[(d, j)] = (credit, cost)
            per_call[d] += credit
        return Booked(step, tuple(per_call))

    @staticmethod
    def fill_before(amounts: Amounts, key: Key) -> Decimal:
        """USD of source ``key[1]`` that calls before ``key[0]`` take (``recheck``'s order)."""
        d, j = key
        return sum((amt for (dd, jj), amt in amounts.items() if jj == j and dd < d), _ZERO)

    def book_parts(
        self, amounts: Amounts, booked: Booked, key: Key, parts: Sequence[Decimal]
    ) -> list[tuple[Decimal, Decimal]]:
        """Credit and cost of each part of step ``key`` (its requests, in order), booked so
        that they add up exactly to the step's booked credit and cost.

        Each part is valued on the segments where it falls (a later request fills the dearer
        levels of a concave source), booked like a step (``book_usd``); the fixed fee goes on
        the first part, which is when it is paid. The last part takes what is left of the
        step's booked figures, so rounding to 1e-18 never makes the parts differ from the step.
        """
        if not parts:
            return []
        j = key[1]
        start = self.fill_before(amounts, key)
        fee = self.inp.sources[j].fixed_fee_usd
        out: list[tuple[Decimal, Decimal]] = []
        for n, part in enumerate(parts[:-1]):
            credit, cost = self._raw(j, part, start)
            if n == 0 and fee > 0:
                cost += dec(fee)
            out.append((book_usd(credit), book_usd(cost)))
            start += part
        credit, cost = booked.step[key]
        with localcontext(_WIDE):
            credit_left = credit - sum((c for c, _ in out), _ZERO)
            cost_left = cost - sum((c for _, c in out), _ZERO)
        out.append((book_usd(credit_left), book_usd(cost_left)))
        return out

    def short(self, booked: Booked, d: int) -> Decimal:
        """Credit call ``d`` still lacks (≤ 0 when covered)."""
        return self.targets[d] - booked.call_credit[d]

    def covered_but_dust(self, booked: Booked, d: int) -> bool:
        """Call ``d`` is covered, or what it lacks is below its dust threshold."""
        return self.short(booked, d) < self.dust[d] or self.short(booked, d) <= 0


# ---------------------------------------------------------------------- 1. snap to steps


def snap_to_steps(f: Finisher, X: FloatArray) -> Amounts:
    """Round each (call, source) amount of the raw solution ``X`` (C × J) down to its step."""
    arrays = f.arrays
    amounts: Amounts = {}
    for d, j in zip(*np.nonzero(X > _EPS_USD), strict=True):
        d, j = int(d), int(j)
        s = f.inp.sources[j]
        x_dj = float(X[d, j])
        cap_f = float(arrays.cap[d, j])
        # A source used up to its capacity less solver tolerance (the strict floors and the
        # cover are relaxed by ~1e-9 of the deficit, and HiGHS's primal feasibility tolerance
        # is 1e-7 of a row's scale) is used up to its capacity.
        if cap_f - x_dj <= 1e-5 + 1e-7 * cap_f:
            x_dj = cap_f
        amt = floor_step(x_dj, s.step_usd)
        cap = dec(cap_f)
        while amt > cap and amt > 0:
            amt -= dec(s.step_usd)
        if 0 < amt < dec(s.min_ticket_usd):
            lifted = ceil_step(s.min_ticket_usd, s.step_usd)
            amt = lifted if lifted <= cap else _ZERO
        if amt > 0:
            amounts[(d, j)] = amt
    return amounts


# ---------------------------------------------------------------------- 3. top up


def _top_up_option(
    f: Finisher, room: Room, rooms: FloatArray, amounts: Amounts, d: int, j: int, short: Decimal
) -> tuple[tuple[int, float], Decimal] | None:
    """Rank and amount (whole steps, in Decimal) of topping call ``d`` up from source ``j``.

    A top-up that closes the gap is ranked by its total cost (surplus cover is worth nothing);
    one that cannot close it alone, by cost per credited USD.
    """
    arrays = f.arrays
    used = (d, j) in amounts
    s = f.inp.sources[j]
    p = room.next_piece(j)
    if p is None or arrays.credit[d, p] <= 0:
        return None
    add = ceil_step(float(short) / arrays.credit[d, p], s.step_usd)
    fee = 0.0
    if not used:
        add = max(add, ceil_step(s.min_ticket_usd, s.step_usd))
        fee = s.fixed_fee_usd
    add = min(add, floor_step(float(rooms[j]), s.step_usd, forgiving=False))
    if add <= 0 or (not used and add < dec(s.min_ticket_usd)):
        return None
    total = arrays.cost[p] * float(add) + fee
    closes = arrays.credit[d, p] * float(add) >= float(short) - 1e-12
    rank = (0, total) if closes else (1, total / (arrays.credit[d, p] * float(add)))
    return rank, add


# Top-up options are pre-ranked in float64 and only the best few are valued exactly (whole
# steps in Decimal): at 1,000 sources valuing every source cost more than the solve.
_EXACT_OPTIONS = 16


def _cheapest_top_up(
    f: Finisher, amounts: Amounts, d: int, short: Decimal, only_used: bool
) -> tuple[int, Decimal] | None:
    """The (source, amount) that best adds credit to call ``d``; ``only_used``: only sources
    the call already uses (folding a step into the others sends no new request)."""
    room = f.room(amounts)
    rooms = room.room_vector(d)
    cand = np.flatnonzero(rooms > _EPS_USD)
    if only_used:
        cand = np.array([j for j in cand if (d, int(j)) in amounts], dtype=np.int64)
    if cand.size > _EXACT_OPTIONS:
        cand = cand[np.argsort(_approx_rank(f, room, rooms, amounts, d, cand, float(short)))]
    best: tuple[tuple[int, float], int, Decimal] | None = None
    valued = 0
    for j in (int(k) for k in cand):
        option = _top_up_option(f, room, rooms, amounts, d, j, short)
        if option is None:
            continue
        valued += 1
        if best is None or option[0] < best[0]:
            best = (option[0], j, option[1])
        if valued >= _EXACT_OPTIONS:
            break
    return None if best is None else (best[1], best[2])


def _approx_rank(
    f: Finisher,
    room: Room,
    rooms: FloatArray,
    amounts: Amounts,
    d: int,
    cand: npt.NDArray[np.int64],
    short: float,
) -> FloatArray:
    """``_top_up_option``'s rank in float64, vectorised over the candidates (closing options
    first, by total cost; then by cost per credit), for ordering; unusable options last."""
    a = f.arrays
    P = f.st.n_pieces
    open_piece = np.where(room.piece_used < a.piece_width - 1e-9, np.arange(P), P)
    nxt = np.minimum.reduceat(open_piece, f.st.piece_starts)[cand]
    has = nxt < P
    p = np.where(has, nxt, 0)
    credit = np.where(has, a.credit[d, p], 0.0)
    usable = credit > 0
    safe_credit = np.where(usable, credit, 1.0)
    step = f.step_usd[cand]
    add = np.ceil(np.maximum(short / safe_credit - 1e-9, 0.0) / step) * step
    unused = np.array([(d, int(j)) not in amounts for j in cand], dtype=bool)
    add = np.where(unused, np.maximum(add, np.ceil(f.min_ticket_usd[cand] / step) * step), add)
    add = np.minimum(add, np.floor(rooms[cand] / step) * step)
    usable &= add > 0
    total = a.cost[p] * add + np.where(unused, f.fixed_fee_usd[cand], 0.0)
    closes = credit * add >= short - 1e-12
    per_credit = total / np.where(usable, credit * add, 1.0)
    # closing options rank below every non-closing one: offset the latter far above
    rank = np.where(closes, total, 1e30 + per_credit)
    out: FloatArray = np.where(usable, rank, np.inf)
    return out


def top_up(
    f: Finisher, amounts: Amounts, *, calls: list[int] | None = None, only_used: bool = False
) -> Amounts:
    """Close every call's remaining gap from the cheapest pieces with room, in whole steps."""
    amounts = dict(amounts)
    booked = f.recheck(amounts)
    for d in range(f.n_calls) if calls is None else calls:
        for _ in range(2 * f.st.n_sources + 2):
            short = f.short(booked, d)
            if short <= 0:
                break
            pick = _cheapest_top_up(f, amounts, d, short, only_used)
            if pick is None:
                break
            j, add = pick
            amounts[(d, j)] = amounts.get((d, j), _ZERO) + add
            booked = f.recheck(amounts)
    return amounts


# ---------------------------------------------------------------------- 4. fold small steps


def fold_small_steps(f: Finisher, amounts: Amounts) -> tuple[Amounts, list[str]]:
    """Fold or drop steps below their minimum useful ticket (``core.routing.worth``).

    Smallest first: without the step, the call's other steps are topped up (no new source);
    the result is kept when the call is still covered (or short by dust only) and costs at most
    ``max(dust_usd, fee)`` more. Otherwise the step stays: cover comes first.
    """
    notes: list[str] = []
    booked = f.recheck(amounts)
    small: list[tuple[Decimal, Key, float]] = []
    for key, amt in amounts.items():
        d, j = key
        s = f.inp.sources[j]
        floor = useful_credit_usd(f.inp, f.arrays, d, j, s.requests_for(float(amt)))
        if booked.step[key][0] < dec(floor):
            small.append((booked.step[key][0], key, floor))
    for _, key, floor in sorted(small):
        if key not in amounts or booked.step[key][0] >= dec(floor):
            continue  # gone, or grown by an earlier fold
        credit = booked.step[key][0]
        d, j = key
        s = f.inp.sources[j]
        trial = dict(amounts)
        del trial[key]
        trial = top_up(f, trial, calls=[d], only_used=True)
        booked_t = f.recheck(trial)
        extra = booked_t.cost_usd - booked.cost_usd
        allowance = dec(max(f.inp.dust_usd, s.fixed_fee_usd))
        if not f.covered_but_dust(booked_t, d) or extra > allowance:
            continue
        grown = sorted(
            {f.inp.sources[k[1]].id for k, amt in trial.items() if amt > amounts.get(k, _ZERO)}
        )
        if grown:
            how = f"folded into {', '.join(grown)}"
        elif f.short(booked_t, d) > 0:
            how = f"dropped, leaving {usd_text(f.short(booked_t, d))} USD of dust uncovered"
        else:
            how = "dropped, not needed for cover"
        notes.append(
            f"call {f.inp.calls[d].id}: step {s.id} of {amounts[key]} USD (credit "
            f"{usd_text(credit)} USD) is below its minimum useful ticket of {floor:.6g} USD "
            f"of credit: {how}"
        )
        amounts, booked = trial, booked_t
    return amounts, notes


# ---------------------------------------------------------------------- 5. trim


def trim_over_cover(f: Finisher, amounts: Amounts) -> Amounts:
    """Give back whole steps of over-cover while every call stays covered in ``Decimal``.

    Strict gives back the last tier first (tier order is a hard rule), cost the dearest; a
    trimmed source keeps its minimum ticket, or is dropped whole and its fee saved.
    """
    inp = f.inp
    booked = f.recheck(amounts)
    for d in range(f.n_calls):
        mine = [k for k in amounts if k[0] == d]

        def order(k: Key, booked: Booked = booked) -> tuple[int, Decimal]:
            credit, cost = booked.step[k]
            tier = int(inp.sources[k[1]].tier) if inp.policy is Policy.STRICT else 0
            return tier, cost / credit if credit else _ZERO

        mine.sort(key=order, reverse=True)
        for key in mine:
            excess = booked.call_credit[d] - f.targets[d]
            if excess <= 0:
                break
            s = inp.sources[key[1]]
            step = dec(s.step_usd)
            lowest = dec(min(g.credit_per_usd for g in s.segments))
            amt = amounts[key]
            cut = (excess / lowest / step).to_integral_value(rounding=ROUND_FLOOR) * step
            if cut >= amt:
                cut = amt
            elif amt - cut < dec(s.min_ticket_usd):
                cut = amt - ceil_step(s.min_ticket_usd, s.step_usd)
            if cut <= 0:
                continue
            trial = dict(amounts)
            if cut == amt:
                del trial[key]
            else:
                trial[key] = amt - cut
            booked_t = f.recheck(trial)
            if all(
                booked_t.call_credit[dd] >= f.targets[dd]
                for dd in range(f.n_calls)
                if booked.call_credit[dd] >= f.targets[dd]
            ):
                amounts, booked = trial, booked_t
    return amounts


# ---------------------------------------------------------------------- 6–7. explain


def allocation_binding(f: Finisher, room: Room, d: int, j: int, amount: float) -> str:
    """The limit that stopped source ``j`` from giving call ``d`` more (``deficit_covered``
    when none did)."""
    s = f.inp.sources[j]
    call = f.inp.calls[d]
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


def shadow_price(f: Finisher, room: Room, used: npt.NDArray[np.bool_], d: int) -> float | None:
    """Cost of one more USD of coverage for call d at the margin of the plan.

    The cheapest cost per credited USD among sources with room left (a source not yet used pays
    its fixed fee on that USD too); ``None`` when nothing can add coverage. For an LP without
    binaries this equals the dual of the cover constraint when λ = ε = 0 (tested).
    """
    arrays = f.arrays
    best: float | None = None
    rooms = room.room_vector(d)
    for j in (int(k) for k in np.flatnonzero(rooms > _EPS_USD)):
        s = f.inp.sources[j]
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
