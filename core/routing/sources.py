"""Collateral sources, their segments, and the routing input (DESIGN §5.1).

A *source* is one way of adding adjusted equity to a deficit pool: an unrealised-PnL offset
(tier 1), collateral already in the right product (tier 2), or a transfer, swap or withdrawal
(tier 3). Its *segments* describe how much adjusted equity each further USD moved buys
(``credit_per_usd``) and what it costs (``cost_per_usd``). Order-book depth and tiered collateral
haircuts make credit concave and cost convex in the amount moved, so segments must be declared
with non-increasing credit and non-decreasing cost; an LP then fills them in order without
binary variables (Boyd & Vandenberghe, *Convex Optimization*, §4.3, piecewise-linear
functions).

Validation happens here, at the edge, and names the source and the field: a bad number never
reaches the solver.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from types import MappingProxyType

from core.errors import DataError
from core.routing.checks import (
    MAX_MONEY_USD,
    MAX_RATE_PER_S,
    MAX_RATIO,
    MAX_SECONDS,
    MAX_WEIGHT,
    MIN_CREDIT_PER_USD,
    SMALLEST_USD,
    fraction,
    in_range,
    money,
    optional_positive_money,
)
from core.routing.legs import LegTemplate, check_chain

__all__ = [
    "CollateralSource",
    "Deficit",
    "Policy",
    "RoutingInput",
    "Segment",
    "SourceMode",
    "Tier",
    "requests_within",
]

# Default weight of the latency term λ (USD per credited USD per second): 60 s of latency on a
# USD costs 6e-5 USD, below any real fee difference, so latency only decides between sources of
# (nearly) equal cost. The tier tie-break ε of the cost policy is smaller still.
DEFAULT_LATENCY_WEIGHT_USD_PER_USD_S = 1e-6
DEFAULT_TIER_TIE_BREAK_USD_PER_USD = 1e-9
DEFAULT_STEP_USD = 0.01
# A deficit (or a remainder) below this is dust: covered, nothing is moved for it (one cent,
# the default venue step). See ``core.routing.worth``.
DEFAULT_DUST_USD = 0.01
# A step crediting less than this fraction of its call's deficit is not worth a request of its
# own (0.50 USD of a 500,000 USD call): it is folded into the call's other steps when they
# have room. See ``core.routing.worth``.
DEFAULT_MIN_STEP_FRAC = 1e-6


class Tier(IntEnum):
    """The product brief's order of preference for collateral sources."""

    PNL_OFFSET = 1
    IN_PRODUCT = 2
    TRANSFER = 3


class Policy(StrEnum):
    """How tiers and cost are traded off (DESIGN §5.2).

    ``strict`` treats the brief's order as a hard rule (maximise tier-1 credit, then tier-2, then
    the cheapest tier-3 cover); ``cost`` minimises cost plus latency and uses tiers only as an ε
    tie-break.
    """

    STRICT = "strict"
    COST = "cost"

    @property
    def other(self) -> Policy:
        return Policy.COST if self is Policy.STRICT else Policy.STRICT


class SourceMode(StrEnum):
    """How collateral moves (DESIGN §7 movement tags)."""

    PNL_OFFSET = "pnl_offset"
    IN_PLACE = "in_place"
    TRANSFER = "transfer"
    SWAP = "swap"
    WITHDRAWAL = "withdrawal"


def _seconds(value: object, field_name: str, where: str, *, positive: bool = False) -> float:
    return in_range(
        value, field_name, where, low=0.0, high=MAX_SECONDS, low_open=positive, unit="s"
    )


def requests_within(latency_s: float, rate_per_s: float | None, deadline_s: float) -> int | None:
    """Return N(T), how many requests of a source can complete by the deadline.

    DESIGN §5.2: N(T) = 0 if L > T; ⌊(T − L)·ρ⌋ + 1 if rate-limited (the first request lands
    after L, one more every 1/ρ seconds); otherwise unbounded (``None``).

    Examples
    --------
    >>> requests_within(2.0, 0.5, 10.0)
    5
    >>> requests_within(70.0, None, 60.0)
    0
    """
    if latency_s > deadline_s:
        return 0
    if rate_per_s is None:
        return None
    # A tiny epsilon keeps 4.999999999 (float noise for an exact 5) from flooring to 4.
    return math.floor((deadline_s - latency_s) * rate_per_s + 1e-9) + 1


@dataclass(frozen=True, slots=True)
class Segment:
    """One linear piece of a source: up to ``width_usd`` moved at a fixed credit and cost rate.

    ``credit_per_usd`` is the adjusted equity credited to the destination per USD moved (the
    destination's collateral rate times any swap slippage), in (0, 1]; ``cost_per_usd`` is fees
    plus slippage paid per USD moved, >= 0.
    """

    width_usd: float
    credit_per_usd: float
    cost_per_usd: float

    @classmethod
    def checked(
        cls, width_usd: object, credit_per_usd: object, cost_per_usd: object, *, where: str
    ) -> Segment:
        """Build a segment or raise a ``DataError`` naming ``where`` (``source[k]``) and the field."""
        width = money(width_usd, "width_usd", where, positive=True)
        credit = fraction(credit_per_usd, "credit_per_usd", where, low_open=True)
        if credit < MIN_CREDIT_PER_USD:
            raise DataError(
                f"credit_per_usd must be at least {MIN_CREDIT_PER_USD:g} (a smaller credit per "
                "USD moved is worth nothing)",
                source=where,
                field="credit_per_usd",
                value=credit,
            )
        # a cost above 1 USD per USD moved is more than the amount itself: a typo, and it
        # would carry booked costs past the store's limit
        cost = fraction(cost_per_usd, "cost_per_usd", where)
        return cls(width, credit, cost)

    def __post_init__(self) -> None:
        # Re-check when constructed directly (the fast path of ``checked`` re-validates, cheaply).
        if not (
            isinstance(self.width_usd, float)
            and SMALLEST_USD <= self.width_usd < MAX_MONEY_USD
            and isinstance(self.credit_per_usd, float)
            and MIN_CREDIT_PER_USD <= self.credit_per_usd <= 1.0
            and isinstance(self.cost_per_usd, float)
            and 0.0 <= self.cost_per_usd <= 1.0
        ):
            checked = Segment.checked(
                self.width_usd, self.credit_per_usd, self.cost_per_usd, where="Segment"
            )
            object.__setattr__(self, "width_usd", checked.width_usd)
            object.__setattr__(self, "credit_per_usd", checked.credit_per_usd)
            object.__setattr__(self, "cost_per_usd", checked.cost_per_usd)


@dataclass(frozen=True, slots=True)
class CollateralSource:
    """One candidate (asset, origin wallet, route) for covering a deficit (DESIGN §5.1).

    Parameters
    ----------
    id
        Unique, stable name (used in plans, idempotency keys and audit rows).
    tier
        1 unrealised-PnL offset, 2 collateral already in the right product, 3 transfer/swap.
    latency_s
        Seconds from request to credited collateral (L).
    segments
        Concave credit / convex cost pieces; their widths sum to the amount available.
    preauth_usd
        Pre-authorised limit P for this source alone (``None``: no limit of its own).
    rate_per_s
        Requests per second the route allows (ρ; ``None``: not rate-limited).
    per_request_usd
        Largest amount one request may move (q; ``None``: no per-request cap).
    fixed_fee_usd
        Fee F paid once if the source is used at all (needs a binary variable).
    min_ticket_usd
        Smallest amount m that may be moved if the source is used (needs a binary variable).
    available_usd
        Extra cap on the amount (``None``: the segment widths are the availability).
    api_weight
        Venue API weight w per request (Binance request weights), drawn from the budget named
        ``venue`` (the DESIGN §5.3 schema's form; ``api_weights`` says more).
    venue
        Venue the source's requests go to (default: the first leg's).
    origin_pool
        Pool the collateral leaves, whose ``call`` level must hold (``None``: leaves no pool).
    origin_debit_per_usd
        Adjusted equity the origin pool loses per USD moved (its collateral rate for the asset).
    step_usd
        Venue step size in USD: planned amounts are rounded down to a multiple of it.
    calls
        Calls (deficit pools) this source may serve; ``None`` means every call.
    groups
        Names of shared limits (pre-authorisation groups, one origin balance) it draws on.
    mode
        Movement tag for execution and audit.
    legs
        The venue operations that carry the source out, in order (``core.routing.legs``);
        empty when the problem does not say (such a plan solves, but is not executable). A
        PnL offset credited in place needs none.
    api_weights
        Weight per request by budget name (``<venue>/<family>``, ``core.routing.budgets``),
        summed over the legs; given, it replaces ``api_weight``/``venue``. Sorted pairs.
    """

    id: str
    tier: Tier
    latency_s: float
    segments: tuple[Segment, ...]
    preauth_usd: float | None = None
    rate_per_s: float | None = None
    per_request_usd: float | None = None
    fixed_fee_usd: float = 0.0
    min_ticket_usd: float = 0.0
    available_usd: float | None = None
    api_weight: float = 0.0
    venue: str = ""
    origin_pool: str | None = None
    origin_debit_per_usd: float = 1.0
    step_usd: float = DEFAULT_STEP_USD
    calls: frozenset[str] | None = None
    groups: tuple[str, ...] = ()
    mode: SourceMode = SourceMode.TRANSFER
    legs: tuple[LegTemplate, ...] = ()
    api_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise DataError("source id must be a non-empty string", field="id", value=self.id)
        where = self.id
        try:
            object.__setattr__(self, "tier", Tier(self.tier))
        except ValueError:
            raise DataError(
                "tier must be 1, 2 or 3", source=where, field="tier", value=self.tier
            ) from None
        try:
            object.__setattr__(self, "mode", SourceMode(self.mode))
        except ValueError:
            raise DataError(
                f"unknown mode; known: {', '.join(m.value for m in SourceMode)}",
                source=where,
                field="mode",
                value=self.mode,
            ) from None
        object.__setattr__(self, "latency_s", _seconds(self.latency_s, "latency_s", where))
        segments = tuple(self.segments)
        if not segments:
            raise DataError("a source needs at least one segment", source=where, field="segments")
        for k, seg in enumerate(segments):
            if not isinstance(seg, Segment):
                raise DataError(
                    "segments must be Segment objects", source=where, field=f"segments[{k}]"
                )
        for k in range(1, len(segments)):
            before, after = segments[k - 1], segments[k]
            if after.credit_per_usd > before.credit_per_usd:
                raise DataError(
                    "segments are not concave in credit: credit_per_usd must not increase",
                    source=where,
                    field=f"segments[{k}].credit_per_usd",
                    value=after.credit_per_usd,
                    previous=before.credit_per_usd,
                )
            if after.cost_per_usd < before.cost_per_usd:
                raise DataError(
                    "segments are not convex in cost: cost_per_usd must not decrease",
                    source=where,
                    field=f"segments[{k}].cost_per_usd",
                    value=after.cost_per_usd,
                    previous=before.cost_per_usd,
                )
        object.__setattr__(self, "segments", segments)
        for name in ("preauth_usd", "per_request_usd", "available_usd"):
            object.__setattr__(
                self, name, optional_positive_money(getattr(self, name), name, where)
            )
        for name in ("fixed_fee_usd", "min_ticket_usd"):
            object.__setattr__(self, name, money(getattr(self, name), name, where))
        object.__setattr__(self, "step_usd", money(self.step_usd, "step_usd", where, positive=True))
        if self.rate_per_s is not None:
            rate = in_range(
                self.rate_per_s, "rate_per_s", where, low=0.0, high=MAX_RATE_PER_S, low_open=True
            )
            object.__setattr__(self, "rate_per_s", rate)
        weight = in_range(self.api_weight, "api_weight", where, low=0.0, high=MAX_WEIGHT)
        object.__setattr__(self, "api_weight", weight)
        debit = fraction(self.origin_debit_per_usd, "origin_debit_per_usd", where)
        object.__setattr__(self, "origin_debit_per_usd", debit)
        if self.calls is not None:
            object.__setattr__(self, "calls", frozenset(self.calls))
        object.__setattr__(self, "groups", tuple(self.groups))
        legs = tuple(self.legs)
        for k, leg in enumerate(legs):
            if not isinstance(leg, LegTemplate):
                raise DataError(
                    "legs must be LegTemplate objects", source=where, field=f"legs[{k}]"
                )
        check_chain(legs, where=where)
        object.__setattr__(self, "legs", legs)
        if not self.venue and legs:
            object.__setattr__(self, "venue", legs[0].venue)
        object.__setattr__(self, "api_weights", self._weights(where))

    def _weights(self, where: str) -> tuple[tuple[str, float], ...]:
        """``api_weights`` merged by name and sorted; the ``api_weight``/``venue`` pair when
        none is given."""
        merged: dict[str, float] = {}
        for pair in self.api_weights:
            name, weight = pair
            if not isinstance(name, str) or not name:
                raise DataError("api_weights names a budget", source=where, field="api_weights")
            value = in_range(weight, f"api_weights[{name}]", where, low=0.0, high=MAX_WEIGHT)
            merged[name] = merged.get(name, 0.0) + value
        if not merged and self.api_weight > 0 and self.venue:
            merged[self.venue] = self.api_weight
        return tuple(sorted((k, v) for k, v in merged.items() if v > 0))

    @property
    def executable(self) -> bool:
        """Whether a plan step from this source can be carried out leg by leg."""
        return bool(self.legs) or self.mode is SourceMode.PNL_OFFSET

    @property
    def total_width_usd(self) -> float:
        return sum(s.width_usd for s in self.segments)

    @property
    def needs_binary(self) -> bool:
        """A fixed fee or a minimum ticket makes "used or not" a discrete decision."""
        return self.fixed_fee_usd > 0 or self.min_ticket_usd > 0

    def serves(self, call_id: str) -> bool:
        return self.calls is None or call_id in self.calls

    def capacity_usd(self, deadline_s: float) -> float:
        """Cap_j(T) = min(available, P_j, q_j·N_j(T)) in USD moved (DESIGN §5.2).

        Deadline, rate limit and pre-authorisation fold into one number, so the optimiser sees a
        single upper bound per source and call.
        """
        cap = self.total_width_usd
        if self.available_usd is not None:
            cap = min(cap, self.available_usd)
        if self.preauth_usd is not None:
            cap = min(cap, self.preauth_usd)
        n = requests_within(self.latency_s, self.rate_per_s, deadline_s)
        if n == 0:
            return 0.0
        if n is not None and self.per_request_usd is not None:
            cap = min(cap, self.per_request_usd * n)
        return cap

    def credit_for(self, amount_usd: float) -> float:
        """Credit earned by moving ``amount_usd``, filling segments in order (concave)."""
        left = amount_usd
        credit = 0.0
        for seg in self.segments:
            take = min(left, seg.width_usd)
            if take <= 0:
                break
            credit += take * seg.credit_per_usd
            left -= take
        return credit

    def requests_for(self, amount_usd: float) -> int:
        """Requests needed to move ``amount_usd`` under the per-request cap (at least one)."""
        if amount_usd <= 0:
            return 0
        if self.per_request_usd is None:
            return 1
        return max(1, math.ceil(amount_usd / self.per_request_usd - 1e-9))

    def eta_s(self, amount_usd: float) -> float:
        """Expected completion: latency plus the spacing of follow-on requests at rate ρ."""
        return self.request_eta_s(self.requests_for(amount_usd))

    def request_eta_s(self, k: int) -> float:
        """When the ``k``-th request (from 1) completes: the first lands after the latency L,
        one more every 1/ρ seconds (DESIGN §5.2's N(T), read the other way)."""
        if k <= 1 or self.rate_per_s is None:
            return self.latency_s
        return self.latency_s + (k - 1) / self.rate_per_s


@dataclass(frozen=True, slots=True)
class Deficit:
    """One margin call to cover: ``deficit_usd`` of adjusted equity within ``deadline_s``.

    ``target_ratio`` and ``mm_usd`` (optional) let an uncovered remainder be turned into a
    suggested position reduction: deficit = r*·MM − E, so cutting MM by uncovered / r* closes it.
    """

    id: str
    deficit_usd: float
    deadline_s: float
    pool: str | None = None
    target_ratio: float | None = None
    mm_usd: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise DataError("call id must be a non-empty string", field="id", value=self.id)
        where = f"call {self.id}"
        object.__setattr__(self, "deficit_usd", money(self.deficit_usd, "deficit_usd", where))
        deadline = _seconds(self.deadline_s, "deadline_s", where, positive=True)
        object.__setattr__(self, "deadline_s", deadline)
        if self.target_ratio is not None:
            ratio = in_range(
                self.target_ratio, "target_ratio", where, low=0.0, high=MAX_RATIO, low_open=True
            )
            object.__setattr__(self, "target_ratio", ratio)
        object.__setattr__(self, "mm_usd", optional_positive_money(self.mm_usd, "mm_usd", where))


def _frozen_map(values: Mapping[str, float], what: str, *, is_money: bool) -> Mapping[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{what}[{key}]"
        if is_money:
            out[str(key)] = money(value, name, what)
        else:
            out[str(key)] = in_range(value, name, what, low=0.0, high=MAX_WEIGHT)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """Everything one routing decision needs: the calls, the sources and shared limits.

    Parameters
    ----------
    calls
        Deficits solved jointly, so they share sources without double-spending.
    sources
        Candidate sources; ids unique.
    policy
        ``strict`` (default) or ``cost``.
    shared_limits_usd
        Limit per group name (a pre-authorisation group, one origin balance): the USD moved by
        all sources listing the group stays within it.
    origin_headroom_usd
        Per origin pool, E − call·MM: the adjusted equity it may lose and stay at its ``call``.
    api_weight_budget
        Per venue, the API weight the plan may spend.
    latency_weight_usd_per_usd_s
        λ of DESIGN §5.2.
    tie_break_usd_per_usd
        ε of DESIGN §5.2 (per tier step).
    """

    calls: tuple[Deficit, ...]
    sources: tuple[CollateralSource, ...]
    policy: Policy = Policy.STRICT
    shared_limits_usd: Mapping[str, float] = field(default_factory=dict)
    origin_headroom_usd: Mapping[str, float] = field(default_factory=dict)
    api_weight_budget: Mapping[str, float] = field(default_factory=dict)
    latency_weight_usd_per_usd_s: float = DEFAULT_LATENCY_WEIGHT_USD_PER_USD_S
    tie_break_usd_per_usd: float = DEFAULT_TIER_TIE_BREAK_USD_PER_USD
    dust_usd: float = DEFAULT_DUST_USD
    min_step_frac: float = DEFAULT_MIN_STEP_FRAC

    def __post_init__(self) -> None:
        calls = tuple(self.calls)
        sources = tuple(self.sources)
        if not calls:
            raise DataError("a routing input needs at least one call", field="calls")
        _unique([c.id for c in calls], "calls")
        _unique([s.id for s in sources], "sources")
        try:
            object.__setattr__(self, "policy", Policy(self.policy))
        except ValueError:
            raise DataError(
                "policy must be 'strict' or 'cost'", field="policy", value=self.policy
            ) from None
        limits = _frozen_map(self.shared_limits_usd, "shared_limits_usd", is_money=True)
        headroom = _frozen_map(self.origin_headroom_usd, "origin_headroom_usd", is_money=True)
        budget = _frozen_map(self.api_weight_budget, "api_weight_budget", is_money=False)
        call_ids = {c.id for c in calls}
        for s in sources:
            for g in s.groups:
                if g not in limits:
                    raise DataError(
                        "source names a shared limit that is not declared",
                        source=s.id,
                        field="groups",
                        value=g,
                    )
            if s.calls is not None:
                unknown = sorted(s.calls - call_ids)
                if unknown:
                    raise DataError(
                        "source names calls that are not in this input",
                        source=s.id,
                        field="calls",
                        value=",".join(unknown),
                    )
        object.__setattr__(self, "calls", calls)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "shared_limits_usd", limits)
        object.__setattr__(self, "origin_headroom_usd", headroom)
        object.__setattr__(self, "api_weight_budget", budget)
        for name in ("latency_weight_usd_per_usd_s", "tie_break_usd_per_usd", "min_step_frac"):
            object.__setattr__(self, name, fraction(getattr(self, name), name, "input"))
        object.__setattr__(self, "dust_usd", money(self.dust_usd, "dust_usd", "input"))

    def with_policy(self, policy: Policy) -> RoutingInput:
        return replace(self, policy=policy)


def _unique(ids: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(f"duplicate id in {what}", field=what, value=i)
        seen.add(i)
