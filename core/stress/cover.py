"""Time-to-cover of one pool in deficit: the router's cover by each deadline, fast where provable.

``time_to_cover`` (DESIGN §4) runs the router in dry mode with deadlines of 10 s, 60 s and
10 min and reports the USD credited by each, capped at the pool's deficit to ``target``. The
router is the model of record; ``CoverSolver`` gives the same figures, to the cent, with far
fewer solves (a stress test at desk scale asks for tens of thousands of them):

1. **One router for the whole evaluation** (``Router(with_alternative=False)``): built problems
   are cached by structure, so a pool shape seen before only rewrites Parameter values; the
   other policy's cost, which a dry run never reads, is not solved.
2. **A certificate of full cover.** For one call the router covers as much as it can first:
   both policies minimise the shortfall before anything else (``core.routing.policies``), so the
   raw solution credits ``min(D', M(T))``, where ``D'`` is the call's deficit (to
   ``target × (1 + buffer)``) and ``M(T)`` the most the sources can credit by ``T`` under their
   capacities, segments, shared limits, origin headroom and API weight budgets. A greedy fill
   that respects every one of those limits is a feasible point, so its credit ``G(T) ≤ M(T)``.
   Finishing the plan (``core.routing.finalise``) loses at most a few venue steps per source
   (rounding down; a minimum ticket that no longer fits), the solver's tolerance and the dust it
   forgives, bounded by ``slack_usd``; topping up and trimming never take the plan below the
   smaller of what it had and ``D'``. So when ``min(G(T), D') − slack ≥ D`` (the stress deficit
   to ``target``), the router credits at least ``D`` and the row reads ``D``: no solve needed.
   Monotone in ``T`` (capacities only grow), so the later deadlines read ``D`` too.
3. **A certificate of no cover.** When no source can deliver anything by ``T`` (every latency
   is past it, or nothing serves the call), the plan moves nothing: 0.
4. **Everything else is routed** (partial cover, several calls), memoised by the problem's
   fingerprint (``core.routing.finalise.problem_id_of``) and the capacities at the deadline, so
   an identical problem is solved once (and 60 s is not solved again when no rate limit binds
   at 10 s); shared limits, origin pools and budgets are renamed in their sorted order first,
   so pools of one shape share one built problem (``canonical``).

``tests/stress/test_stress_cover.py`` holds the figures equal to the router's on every row of
the example desk's scenarios and on hypothesis-generated inputs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from core.routing.sources import CollateralSource, RoutingInput

if TYPE_CHECKING:
    from core.routing.router import Router

__all__ = [
    "COVER_DEADLINES_S",
    "CoverSolver",
    "CoverStats",
    "canonical",
    "greedy_credit_usd",
    "slack_usd",
]

#: The deadlines time-to-cover reports (seconds): 10 s, 60 s, 10 min.
COVER_DEADLINES_S = (10.0, 60.0, 600.0)
_ZERO = Decimal(0)
_CENT = Decimal("0.01")
# Relative and absolute safety on the greedy fill (float noise in the limits it reads).
_REL = 1e-9
_ABS_USD = 1e-6


def cents(x: Decimal | float) -> Decimal:
    """A USD amount rounded to cents (half-even), as the stress rows book it."""
    return Decimal(repr(x) if isinstance(x, float) else x).quantize(_CENT)


@dataclass(slots=True)
class CoverStats:
    """How each (row, deadline) was answered: certified, routed, or found in the memo."""

    full: int = 0
    none: int = 0
    routed: int = 0
    memo: int = 0

    @property
    def total(self) -> int:
        return self.full + self.none + self.routed + self.memo


def _capacity(s: CollateralSource, deficit_usd: float, deadline_s: float) -> float:
    """The router's bound on what ``s`` may move by ``deadline_s`` (``arrays.compile_arrays``:
    a source with a fixed fee or minimum ticket is also capped at what alone covers the call)."""
    cap = s.capacity_usd(deadline_s)
    if s.needs_binary:
        lowest = s.segments[-1].credit_per_usd
        need = max(deficit_usd / lowest * (1 + 1e-9) + 1e-6, s.min_ticket_usd)
        cap = min(cap, need)
    return cap


def greedy_credit_usd(inp: RoutingInput, deadline_s: float) -> float:
    """Credit of a feasible plan for ``inp``'s only call by ``deadline_s``: a lower bound on the
    most the sources can credit (``M(T)`` of the module docstring).

    Sources are filled best credit per USD first, each as far as its capacity, its segments and
    what is left of every shared limit, origin headroom and API weight budget it draws on allow
    (the constraints of ``core.routing.terms``, read from the input as ``compile_arrays`` reads
    them); a source that cannot reach its minimum ticket is skipped.
    """
    if len(inp.calls) != 1:
        raise ValueError("greedy_credit_usd bounds a single call")
    call = inp.calls[0]
    group_left = dict(inp.shared_limits_usd)
    origin_left = dict(inp.origin_headroom_usd)
    budget_left = dict(inp.api_weight_budget)
    order = sorted(
        (s for s in inp.sources if s.serves(call.id)),
        key=lambda s: (-s.segments[0].credit_per_usd, s.latency_s, s.id),
    )
    total = 0.0
    for s in order:
        cap = _capacity(s, call.deficit_usd, deadline_s)
        if cap <= 0:
            continue
        amount = cap
        for g in s.groups:
            amount = min(amount, group_left[g])
        debit = s.origin_debit_per_usd if s.origin_pool in origin_left else 0.0
        if debit > 0 and s.origin_pool is not None:
            amount = min(amount, origin_left[s.origin_pool] / debit)
        # requests ≈ amount / q, q the per-request cap (or the whole capacity): ``ApiWeightBudget``
        q = s.per_request_usd if s.per_request_usd is not None else s.capacity_usd(deadline_s)
        per_usd = {
            name: (w / q if q > 0 else 0.0) for name, w in s.api_weights if name in budget_left
        }
        for name, w in per_usd.items():
            if w > 0:
                amount = min(amount, budget_left[name] / w)
        amount = amount * (1 - _REL) - _ABS_USD
        if amount <= 0 or (s.needs_binary and amount < s.min_ticket_usd):
            continue
        total += s.credit_for(amount)
        for g in s.groups:
            group_left[g] -= amount
        if debit > 0 and s.origin_pool is not None:
            origin_left[s.origin_pool] -= amount * debit
        for name, w in per_usd.items():
            budget_left[name] -= amount * w
    return max(0.0, total * (1 - _REL) - _ABS_USD)


def slack_usd(inp: RoutingInput, deadline_s: float) -> float:
    """Most that finishing a plan can take off its raw credit, for ``inp``'s only call.

    Per source that can deliver by ``deadline_s``: three venue steps (the snap down to steps, a
    step that float noise pushes past a cap, the snap to whole asset steps) and its minimum
    ticket (a step lifted to it that no longer fits is dropped); plus the dust the plan forgives
    (``core.routing.worth``) and the solver's tolerances (``core.routing.policies``: 1e-6 USD
    and 1e-9 of the deficit; HiGHS's 1e-7 on scaled rows), taken as 1e-6 of the deficit.
    """
    call = inp.calls[0]
    d = call.deficit_usd
    out = max(inp.dust_usd, inp.min_step_frac * d) + 1e-6 * d + 1e-3
    for s in inp.sources:
        if s.serves(call.id) and s.capacity_usd(deadline_s) > 0:
            out += 3 * s.step_usd + s.min_ticket_usd
    return out


def canonical(inp: RoutingInput) -> RoutingInput:
    """``inp`` with its shared limits, origin pools and API budgets renamed ``g0000``, ``o0000``,
    ``b0000``… in their sorted order: the same problem, built the same way (the structure lists
    them sorted by name), whatever the desk calls them, so one built problem serves every pool
    of one shape (the 1,000-pool benchmark desk has 334 copies of each pool, each with its own
    route names). Names appear in no figure of the plan that time-to-cover reads.
    """
    groups = {g: f"g{k:04d}" for k, g in enumerate(sorted(inp.shared_limits_usd))}
    origins = {o: f"o{k:04d}" for k, o in enumerate(sorted(inp.origin_headroom_usd))}
    budgets = {b: f"b{k:04d}" for k, b in enumerate(sorted(inp.api_weight_budget))}
    sources = tuple(
        replace(
            s,
            groups=tuple(groups[g] for g in s.groups),
            origin_pool=origins.get(s.origin_pool, s.origin_pool) if s.origin_pool else None,
            api_weights=tuple((budgets.get(n, n), w) for n, w in s.api_weights),
        )
        for s in inp.sources
    )
    return replace(
        inp,
        sources=sources,
        shared_limits_usd={groups[g]: v for g, v in inp.shared_limits_usd.items()},
        origin_headroom_usd={origins[o]: v for o, v in inp.origin_headroom_usd.items()},
        api_weight_budget={budgets[b]: v for b, v in inp.api_weight_budget.items()},
    )


def _reaches(inp: RoutingInput, deadline_s: float) -> bool:
    """Whether any source can deliver anything to the call by ``deadline_s``."""
    return any(
        s.capacity_usd(deadline_s) > 0 for c in inp.calls for s in inp.sources if s.serves(c.id)
    )


class CoverSolver:
    """USD of a deficit covered by each deadline, by the router or a certificate of its result.

    One solver serves a whole stress evaluation (the router's cache of built problems and the
    memo of routed inputs are shared across rows; neither changes any figure, so results do not
    depend on how scenarios are batched). ``fast=False`` routes every deadline (the reference
    the certificates are tested against).

    Examples
    --------
    >>> from core.routing.jsonio import parse_problem
    >>> inp = parse_problem({"deficit_usd": 1020, "deadline_s": 600, "sources": [
    ...     {"id": "spot", "tier": 3, "latency_s": 1, "rate_per_s": 1, "per_request_usd": 600,
    ...      "segments": [{"width_usd": 5000, "credit_per_usd": 1, "cost_per_usd": 0}]}]})
    >>> solver = CoverSolver()
    >>> [str(c) for c in solver.covered(inp, Decimal("1000"))]  # 10 s: 10 requests of 600
    ['1000.00', '1000.00', '1000.00']
    >>> solver.stats.full, solver.stats.routed
    (3, 0)
    """

    def __init__(self, router: Router | None = None, *, fast: bool = True, memo: int = 4096):
        self._router = router
        self.fast = fast
        self.stats = CoverStats()
        self._memo: OrderedDict[str, Decimal] = OrderedDict()
        self._memo_size = memo

    def __repr__(self) -> str:
        return f"CoverSolver(fast={self.fast}, router={self._router!r})"

    @property
    def router(self) -> Router:
        """The shared dry-run router (built on first use: cvxpy loads only when a row needs it)."""
        if self._router is None:
            from core.routing.router import Router

            self._router = Router(with_alternative=False, cache_size=64)
        return self._router

    def credit_usd(self, inp: RoutingInput, deadline_s: float) -> Decimal:
        """The router's credit (cents) for ``inp`` with every call due in ``deadline_s``.

        With ``fast``, memoised: the plan is a function of the input and of the sources'
        capacities at the deadline (the only numbers ``compile_arrays`` derives from it), so a
        deadline that leaves every capacity as it was (rate limits that do not bind) reuses the
        plan of the earlier one; and the shared limits, origin pools and API budgets are renamed
        in their sorted order (``canonical``), so pools of one shape share one built problem.
        """
        return self._credit(canonical(inp) if self.fast else inp, deadline_s)

    def _credit(
        self, inp: RoutingInput, deadline_s: float, problem_id: str | None = None
    ) -> Decimal:
        """``credit_usd`` of an input already renamed (with ``fast``); ``problem_id``: its
        ``problem_id_of``, when the caller has it (the same for every deadline of a row)."""
        if not self.fast:
            self.stats.routed += 1
            return self._route(inp, deadline_s)
        from core.routing.arrays import capacities_usd
        from core.routing.finalise import problem_id_of

        deadlines = np.full(len(inp.calls), float(deadline_s))
        caps = capacities_usd(inp, deadlines) if inp.sources else np.zeros((len(deadlines), 0))
        if problem_id is None:
            problem_id = problem_id_of(inp)
        key = problem_id + caps.astype("<f8").tobytes().hex()
        found = self._memo.get(key)
        if found is not None:
            self.stats.memo += 1
            self._memo.move_to_end(key)
            return found
        self.stats.routed += 1
        credit = self._route(inp, deadline_s)
        self._memo[key] = credit
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return credit

    def _route(self, inp: RoutingInput, deadline_s: float) -> Decimal:
        timed = replace(inp, calls=tuple(replace(c, deadline_s=deadline_s) for c in inp.calls))
        return cents(self.router.route(timed).credit_usd)

    def covered(
        self,
        inp: RoutingInput,
        deficit_usd: Decimal,
        deadlines_s: Sequence[float] = COVER_DEADLINES_S,
    ) -> list[Decimal]:
        """USD of ``deficit_usd`` covered within each of ``deadlines_s`` (ascending), in cents.

        Cumulative and capped at the deficit: the running maximum of the router's credit (a
        longer deadline can only allow more; the cost-optimal plan at 60 s may credit a hair less
        than the 10 s one at rounding), then the smaller of that and the deficit.
        """
        cap = cents(deficit_usd)
        single = len(inp.calls) == 1
        routed: RoutingInput | None = None  # renamed once per row, and only if routed
        problem_id: str | None = None  # its fingerprint, once per row
        out: list[Decimal] = []
        best = _ZERO
        for k, t in enumerate(deadlines_s):
            if self.fast and single and self._certainly_full(inp, deficit_usd, t):
                self.stats.full += len(deadlines_s) - k
                out += [cap] * (len(deadlines_s) - k)
                return out
            if self.fast and not _reaches(inp, t):
                self.stats.none += 1
                credit = _ZERO
            else:
                if routed is None:
                    routed = canonical(inp) if self.fast else inp
                    if self.fast:
                        from core.routing.finalise import problem_id_of

                        problem_id = problem_id_of(routed)
                credit = self._credit(routed, t, problem_id)
            best = max(best, credit)
            out.append(min(best, cap))
        return out

    @staticmethod
    def _certainly_full(inp: RoutingInput, deficit_usd: Decimal, deadline_s: float) -> bool:
        """``min(G(T), D') − slack ≥ D``: the router credits at least ``deficit_usd``."""
        need = float(deficit_usd)
        if need <= 0:
            return True
        slack = slack_usd(inp, deadline_s)
        if inp.calls[0].deficit_usd - slack < need:
            return False
        return greedy_credit_usd(inp, deadline_s) - slack >= need
