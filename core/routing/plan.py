"""Plans: the booked, ordered, explained steps of a routing decision (DESIGN §5.3).

Types only, so the store (``core.ledger.plans``) and the executor can read and write plans
without loading the optimiser; ``core.routing.finalise`` builds them from a raw solution.

Each allocation says why it is there (tier, cost per credited USD, ETA, binding limit) and
which legs carry it out (``core.routing.legs``: venue, wallets, asset, amount in the asset);
each call carries the shadow price of its cover constraint (what one more USD of coverage
would cost at the margin of this plan) and, when short, the position reduction that would
close the gap. ``notes`` say what was treated as dust, folded, or left out, and why.

A plan has no identity of its own: ``problem_id`` fingerprints the problem it solved (the same
state gives the same fingerprint, whichever margin call asked). The store gives a plan its
identity when it records it for a margin call, as version *n* of that call's plans, and each
leg its idempotency key then (``core.ledger.keys.leg_key``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from core.routing.legs import Leg
from core.routing.sources import Policy, SourceMode

__all__ = [
    "Allocation",
    "Alternative",
    "CallOutcome",
    "LazyAlternative",
    "Plan",
]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Allocation:
    """One step of a plan: move ``amount_usd`` from ``source`` for ``call``, leg by leg.

    ``amount_usd`` is what the first leg moves, valued at the price the plan used (its asset
    amount rounded down to the venue's step, times the price); ``credit_usd`` and ``cost_usd``
    are re-computed from it in ``Decimal``. ``legs`` is empty when the problem did not say how
    the source is carried out: the step is then not executable (a PnL offset credited in place
    needs no leg and is).
    """

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
    origin_pool: str | None = None
    venue: str = ""
    legs: tuple[Leg, ...] = ()

    @property
    def cost_per_credit_usd(self) -> Decimal:
        if self.credit_usd == 0:
            return _ZERO
        return self.cost_usd / self.credit_usd

    @property
    def executable(self) -> bool:
        return bool(self.legs) or self.mode == SourceMode.PNL_OFFSET.value

    @property
    def why(self) -> str:
        return (
            f"tier {self.tier} ({self.mode}): {float(self.cost_per_credit_usd):.6f} USD per "
            f"credited USD, ETA {self.eta_s:.3g} s, bound by {self.binding}"
        )


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """Coverage of one call, the marginal cost of more, and what to cut if short.

    ``deadline_s`` is the call's deadline the plan was made for. ``dust_usd`` is credit the
    call lacks but that is below its dust threshold (a deficit too small for any step, or a
    remainder no source has room for): counted as covered.
    """

    call: str
    deficit_usd: Decimal
    credit_usd: Decimal
    cost_usd: Decimal
    uncovered_usd: Decimal
    shadow_price_usd_per_usd: float | None
    deadline_s: float
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
    """A routing plan: DESIGN §5.3 output plus explanations, legs and provenance.

    ``alternative`` (the other policy's cost) is solved on first access when the router made
    it lazy; ``alternative_pending`` tells whether that has happened yet. ``problem_id``
    fingerprints the problem (``core.routing.finalise.problem_id_of``), not the plan.
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
    problem_id: str
    solves: int
    stages: tuple[str, ...]
    config: str = ""
    notes: tuple[str, ...] = ()

    @property
    def covered(self) -> bool:
        return self.uncovered_usd == 0

    @property
    def executable(self) -> bool:
        """Whether every step says, leg by leg, how to carry it out."""
        return all(a.executable for a in self.allocations)

    def for_call(self, call: str) -> tuple[Allocation, ...]:
        """The steps serving ``call``, in plan order."""
        return tuple(a for a in self.allocations if a.call == call)

    @property
    def alternative(self) -> Alternative | None:
        return None if self.other_policy is None else self.other_policy.get()

    @property
    def alternative_pending(self) -> bool:
        return self.other_policy is not None and not self.other_policy.computed
