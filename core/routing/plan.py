"""Plans: the booked, ordered, explained steps of a routing decision, and ``finalise``.

``finalise`` is a short driver over the finishing steps of ``core.routing.finish`` (snap to
venue steps, re-check in Decimal, top up, trim over-cover, fold steps not worth a request),
then orders the steps by expected completion and explains each step and each call.

Each allocation says why it is there (tier, cost per credited USD, ETA, binding limit) and
carries a deterministic idempotency key; each call carries the shadow price of its cover
constraint (what one more USD of coverage would cost at the margin of this plan) and, when
short, the position reduction that would close the gap. ``notes`` say what was treated as
dust, folded, or left out, and why.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
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
    idempotency_key,
    shadow_price,
    snap_to_steps,
    top_up,
    trim_over_cover,
    usd_text,
)
from core.routing.policies import RawSolution
from core.routing.room import Room
from core.routing.sources import Policy, RoutingInput

__all__ = [
    "Allocation",
    "Alternative",
    "CallOutcome",
    "LazyAlternative",
    "Plan",
    "finalise",
    "plan_id_of",
]

_ZERO = Decimal(0)


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
    """Coverage of one call, the marginal cost of more, and what to cut if short.

    ``dust_usd`` is credit the call lacks but that is below its dust threshold (a deficit too
    small for any step, or a remainder no source has room for): counted as covered.
    """

    call: str
    deficit_usd: Decimal
    credit_usd: Decimal
    cost_usd: Decimal
    uncovered_usd: Decimal
    shadow_price_usd_per_usd: float | None
    mm_reduction_usd: Decimal | None = None
    position_reduction_frac: float | None = None
    dust_usd: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class Alternative:
    """What the other policy would have done (cost and status only)."""

    policy: Policy
    cost_usd: Decimal | None
    status: str
    note: str = ""
    solve_ms: float | None = None


class LazyAlternative:
    """The other policy's cost, solved on first use, once (DESIGN §5.3 ``alternative``).

    Acting on a margin call needs only the plan; the comparison is for the record. The router
    hands out the plan at once and this solves the other policy when first asked (printing the
    plan, storing it, after the first leg is sent). Thread-safe: one solve however many ask.
    """

    __slots__ = ("_compute", "_lock", "_value")

    def __init__(self, compute: Callable[[], Alternative]) -> None:
        self._compute: Callable[[], Alternative] | None = compute
        self._value: Alternative | None = None
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, value: Alternative) -> LazyAlternative:
        lazy = cls(lambda: value)
        lazy.get()
        return lazy

    @property
    def computed(self) -> bool:
        return self._compute is None

    def get(self) -> Alternative:
        with self._lock:
            if self._compute is not None:
                self._value = self._compute()
                self._compute = None
            if self._value is None:  # pragma: no cover - set above on first use
                raise RuntimeError("alternative was not computed")
            return self._value

    def __repr__(self) -> str:
        return f"LazyAlternative({self._value!r})" if self.computed else "LazyAlternative(pending)"


@dataclass(frozen=True, slots=True)
class Plan:
    """A routing plan: DESIGN §5.3 output plus explanations, keys and provenance.

    ``alternative`` (the other policy's cost) is solved on first access when the router made
    it lazy; ``alternative_pending`` tells whether that has happened yet.
    """

    status: str
    policy: Policy
    cost_usd: Decimal
    credit_usd: Decimal
    uncovered_usd: Decimal
    allocations: tuple[Allocation, ...]
    calls: tuple[CallOutcome, ...]
    solve_ms: float
    other_policy: LazyAlternative | None
    method: str
    fallback_reason: str | None
    plan_id: str
    solves: int
    stages: tuple[str, ...]
    config: str = ""
    notes: tuple[str, ...] = ()

    @property
    def covered(self) -> bool:
        return self.uncovered_usd == 0

    @property
    def alternative(self) -> Alternative | None:
        return None if self.other_policy is None else self.other_policy.get()

    @property
    def alternative_pending(self) -> bool:
        return self.other_policy is not None and not self.other_policy.computed


def plan_id_of(inp: RoutingInput) -> str:
    """A stable id for a problem with its policy: the prefix of idempotency keys and plan rows.

    sha256 over the problem's canonical form: its names, tags and limits' keys as compact
    JSON, and every number as IEEE-754 float64 bytes in a fixed order (the same numbers give
    the same id whether the problem file wrote them as numbers or strings). Hashing the raw
    numbers instead of their decimal text keeps this at ~2 ms for 1,000 sources (printing
    every float as JSON took 15–20 ms, half a route). First 16 hex digits.
    """
    nan = float("nan")

    def opt(v: float | None) -> float:
        return nan if v is None else v

    names: list[Any] = [inp.policy.value, "v2"]
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
        names.append([s.id, s.mode.value, s.venue, s.origin_pool, calls, list(s.groups)])
        numbers += [
            float(s.tier),
            s.latency_s,
            opt(s.preauth_usd),
            opt(s.rate_per_s),
            opt(s.per_request_usd),
            s.fixed_fee_usd,
            s.min_ticket_usd,
            opt(s.available_usd),
            s.api_weight,
            s.origin_debit_per_usd,
            s.step_usd,
            float(len(s.segments)),
        ]
        for g in s.segments:
            numbers += [g.width_usd, g.credit_per_usd, g.cost_per_usd]
    digest = hashlib.sha256(json.dumps(names, separators=(",", ":")).encode())
    digest.update(np.asarray(numbers, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def _allocations_in_order(
    f: Finisher, amounts: Amounts, booked: Booked, room: Room, plan_id: str
) -> list[Allocation]:
    """Every step with its explanation and key, ordered by expected completion."""
    out: list[Allocation] = []
    for (d, j), amt in amounts.items():
        s = f.inp.sources[j]
        credit, cost = booked.step[(d, j)]
        call_id = f.inp.calls[d].id
        out.append(
            Allocation(
                call=call_id,
                source=s.id,
                tier=int(s.tier),
                mode=s.mode.value,
                amount_usd=amt,
                credit_usd=credit,
                cost_usd=cost,
                eta_s=s.eta_s(float(amt)),
                requests=s.requests_for(float(amt)),
                latency_s=s.latency_s,
                binding=allocation_binding(f, room, d, j, float(amt)),
                idempotency_key=idempotency_key(plan_id, call_id, s.id, amt),
                origin_pool=s.origin_pool,
                venue=s.venue,
            )
        )
    out.sort(key=lambda a: (a.eta_s, a.call, a.source))
    return out


def _suggested_reduction(
    inp: RoutingInput, d: int, uncovered: Decimal
) -> tuple[Decimal | None, float | None]:
    """deficit = r*·MM − E, so cutting MM by uncovered / r* closes the gap (DESIGN §3.2); r*
    defaults to the DESIGN §3.3 target of 1.5 when the call does not say."""
    if uncovered <= 0:
        return None, None
    call = inp.calls[d]
    ratio = call.target_ratio if call.target_ratio is not None else DEFAULT_TARGET_RATIO
    mm_cut = uncovered / dec(ratio)
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
    plan_id: str,
    solve_ms: float,
    method: str,
    fallback_reason: str | None = None,
    alternative: LazyAlternative | None = None,
    config: str = "",
    notes: tuple[str, ...] = (),
) -> Plan:
    """Snap, re-check, top up, fold, trim, order and explain a raw solution as a ``Plan``.

    ``deficits`` are the calls' deficits as asked; ``f.targets`` what must be credited (0 for
    a call covered as dust).
    """
    amounts = snap_to_steps(f, f.st.per_source(raw.x))
    amounts = top_up(f, amounts)
    amounts = trim_over_cover(f, amounts)
    amounts, fold_notes = fold_small_steps(f, amounts)  # also what trimming left tiny
    if fold_notes:
        amounts = trim_over_cover(f, amounts)  # what folding topped up past the need
    booked = f.recheck(amounts)
    room = f.room(amounts)
    all_notes = [*notes, *fold_notes]
    allocations = _allocations_in_order(f, amounts, booked, room, plan_id)
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
        plan_id=plan_id,
        solves=raw.solves,
        stages=raw.stages,
        config=config,
        notes=tuple(all_notes),
    )
