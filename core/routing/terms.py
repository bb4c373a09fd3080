"""Objective terms and constraints of the router, as small objects over shared variables.

Each term owns its ``cp.Parameter``s, compiles once against the shared ``RouterVars``
(``build``), checks that what it built is DPP and names itself if not, and afterwards only
writes ``.value`` (``update``). The pattern is cvxportfolio's ``compile_to_cvxpy`` /
``values_in_time`` split (STYLE rules 15–16); the maths is DESIGN §5.2.

Notation: calls d (C), sources j (J), pieces p (P, one per source segment), binary sources b (B).
x[d, p] is the USD moved from piece p for call d; X = x @ Sᵀ sums a source's pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from core.errors import RoutingError
from core.routing.arrays import Arrays, Structure
from core.routing.cvx import cp, csum, is_dpp, multiply, set_value

__all__ = [
    "ApiWeightBudget",
    "Capacity",
    "ConstraintTerm",
    "Cover",
    "FixedFees",
    "LatencyPenalty",
    "LinearCost",
    "MinTicket",
    "ObjectiveTerm",
    "OriginHeadroom",
    "RouterVars",
    "SegmentWidths",
    "SharedLimits",
    "TierFloors",
    "TierStageCredit",
    "TierTieBreak",
]


@dataclass(frozen=True, slots=True)
class RouterVars:
    """The decision variables every term compiles against.

    ``u`` is the per-call shortfall (uncovered credit); ``s`` the capped tier credit maximised by
    the strict policy's staged solves.
    """

    st: Structure
    x: cp.Variable
    y: cp.Variable | None
    u: cp.Variable
    s: cp.Variable
    s1: cp.Variable
    s12: cp.Variable
    X: cp.Expression  # (C, J)
    X_free: cp.Expression | None  # (C, J − B) sources without binaries
    X_bin: cp.Expression | None  # (C, B) sources with binaries
    free_sources: tuple[int, ...]

    @classmethod
    def create(cls, st: Structure) -> RouterVars:
        C, P, B = st.n_calls, st.n_pieces, len(st.binary_sources)
        x = cp.Variable((C, P), nonneg=True, name="x")
        y = cp.Variable((C, B), boolean=True, name="y") if B else None
        u = cp.Variable(C, nonneg=True, name="u")
        s = cp.Variable(C, nonneg=True, name="s")
        s1 = cp.Variable(C, nonneg=True, name="s_tier1")
        s12 = cp.Variable(C, nonneg=True, name="s_tier12")
        bin_set = set(st.binary_sources)
        free = tuple(j for j in range(st.n_sources) if j not in bin_set)
        X = x @ st.aggregation().T
        X_free = x @ st.aggregation(free).T if free else None
        X_bin = x @ st.aggregation(st.binary_sources).T if B else None
        return cls(st, x, y, u, s, s1, s12, X, X_free, X_bin, free)

    def moved_per_source(self) -> cp.Expression:
        """Σ_d X[d, j]: USD leaving each source over all calls."""
        return csum(self.X, axis=0)

    def credit_with(self, weights: cp.Parameter) -> cp.Expression:
        """Per call Σ_p weights[d, p]·x[d, p] (a Parameter times the variable: DPP)."""
        return csum(multiply(weights, self.x), axis=1)


def _check_dpp(name: str, items: list[cp.Constraint] | cp.Expression) -> None:
    objs = items if isinstance(items, list) else [items]
    for obj in objs:
        if not is_dpp(obj):
            raise RoutingError(f"term {name} is not DPP-compliant; fix its formulation", term=name)


class ObjectiveTerm(Protocol):
    name: str

    def build(self, v: RouterVars) -> cp.Expression: ...

    def update(self, a: Arrays) -> None: ...


class ConstraintTerm(Protocol):
    name: str

    def build(self, v: RouterVars) -> list[cp.Constraint]: ...

    def update(self, a: Arrays) -> None: ...


# ---------------------------------------------------------------- objective terms


class LinearCost:
    """Σ c_p x_dp: fees and slippage per USD moved (convex through the segment order)."""

    name = "linear_cost"

    def __init__(self, st: Structure) -> None:
        self.c = cp.Parameter(st.n_pieces, nonneg=True, name="cost_per_usd")

    def build(self, v: RouterVars) -> cp.Expression:
        expr = csum(v.x @ self.c)
        _check_dpp(self.name, expr)
        return expr

    def update(self, a: Arrays) -> None:
        set_value(self.c, a.cost)


class FixedFees:
    """Σ F_b y_db: a fixed fee per used (source, call); zero when there are no binaries."""

    name = "fixed_fees"

    def __init__(self, st: Structure) -> None:
        self.f = cp.Parameter(len(st.binary_sources), nonneg=True, name="fixed_fee_usd")

    def build(self, v: RouterVars) -> cp.Expression:
        if v.y is None:
            return cp.Constant(0.0)
        expr = csum(v.y @ self.f)
        _check_dpp(self.name, expr)
        return expr

    def update(self, a: Arrays) -> None:
        set_value(self.f, a.fee)


class LatencyPenalty:
    """λ Σ L_j credit_j: prefers fast sources at (nearly) equal cost; λ·L·credit precomputed."""

    name = "latency_penalty"

    def __init__(self, st: Structure) -> None:
        self.w = cp.Parameter(st.n_pieces, nonneg=True, name="latency_credit")

    def build(self, v: RouterVars) -> cp.Expression:
        expr = csum(v.x @ self.w)
        _check_dpp(self.name, expr)
        return expr

    def update(self, a: Arrays) -> None:
        set_value(self.w, a.latency_credit)


class TierTieBreak:
    """ε Σ (tier_j − 1) X_j: the cost policy's tie-break toward the brief's order."""

    name = "tier_tie_break"

    def __init__(self, st: Structure) -> None:
        self.w = cp.Parameter(st.n_pieces, nonneg=True, name="tier_tie_break")

    def build(self, v: RouterVars) -> cp.Expression:
        expr = csum(v.x @ self.w)
        _check_dpp(self.name, expr)
        return expr

    def update(self, a: Arrays) -> None:
        set_value(self.w, a.tie_break)


class TierStageCredit:
    """Capped tier credit s_d ≤ min(D_d, Σ_p a_stage[d,p] x[d,p]) maximised by a strict stage."""

    name = "tier_stage_credit"

    def __init__(self, st: Structure) -> None:
        C, P = st.n_calls, st.n_pieces
        self.a_stage = cp.Parameter((C, P), nonneg=True, name="stage_credit")
        self.cap = cp.Parameter(C, nonneg=True, name="stage_cap_usd")

    def build_constraints(self, v: RouterVars) -> list[cp.Constraint]:
        cons = [v.s <= v.credit_with(self.a_stage), v.s <= self.cap]
        _check_dpp(self.name, cons)
        return cons

    def build(self, v: RouterVars) -> cp.Expression:
        return csum(v.s)

    def set_stage(self, credit: np.ndarray, cap: np.ndarray) -> None:
        set_value(self.a_stage, credit)
        set_value(self.cap, cap)

    def update(self, a: Arrays) -> None:
        self.set_stage(a.credit_tier1, a.deficit)


# ---------------------------------------------------------------- constraints


class SegmentWidths:
    """0 ≤ x_dp ≤ u_dp (0 where the source cannot serve d); Σ_d x_dp ≤ u_p when calls share."""

    name = "segment_widths"

    def __init__(self, st: Structure) -> None:
        self.shared = st.n_calls > 1
        self.u = cp.Parameter((st.n_calls, st.n_pieces), nonneg=True, name="width_usd")
        self.u_all = cp.Parameter(st.n_pieces, nonneg=True, name="piece_width_usd")

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        cons = [v.x <= self.u]
        if self.shared:
            cons.append(csum(v.x, axis=0) <= self.u_all)
        _check_dpp(self.name, cons)
        return cons

    def update(self, a: Arrays) -> None:
        set_value(self.u, a.width)
        set_value(self.u_all, a.piece_width)


class Capacity:
    """X_dj ≤ Cap_j(T_d)·y_dj (y ≡ 1 without binaries); Σ_d X_dj ≤ Cap_j(max T) when shared.

    Cap_j(T) = min(available, P_j, q_j·N_j(T)) folds deadline, rate limit and pre-authorisation
    (DESIGN §5.2), computed per call in ``CollateralSource.capacity_usd``.

    A binary source with several segments is also linked on its first segment:
    x_d,first ≤ min(u_first, M_db)·y_db. The aggregate X ≤ M·y alone lets the LP relaxation
    pay the fixed fee pro rata (y = X/M), so every fee source filled to a segment boundary came
    out fractional and the branch and bound needed hundreds of nodes at 1,000 sources. With
    the link, a source whose first segment is full has y = 1 in the relaxation, and only the
    marginal source(s) can be fractional. Segments fill in order (credit concave, cost
    convex), so a later segment is used only once the first is full: links on later segments
    would add rows (≈ 20 % on 10 joint calls) without tightening further. The link is implied
    by X ≤ M·y for integral y, so no integer solution is cut off (the "strong" fixed-charge
    formulation: Wolsey, *Integer Programming*, §1.9; Croxton, Gendron & Magnanti 2003,
    Management Science 49(9)).
    """

    name = "capacity"

    def __init__(self, st: Structure) -> None:
        C, B = st.n_calls, len(st.binary_sources)
        self.free = tuple(j for j in range(st.n_sources) if j not in set(st.binary_sources))
        self.bins = st.binary_sources
        self.shared = C > 1
        self.cap_free = cp.Parameter((C, len(self.free)), nonneg=True, name="cap_free_usd")
        self.cap_bin = cp.Parameter((C, B), nonneg=True, name="cap_bin_usd")
        self.cap_all = cp.Parameter(st.n_sources, nonneg=True, name="cap_all_usd")
        self.link_pieces, self.link_map = st.binary_piece_links()
        self.cap_piece = cp.Parameter(
            (C, len(self.link_pieces)), nonneg=True, name="cap_bin_piece_usd"
        )

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        cons: list[cp.Constraint] = []
        if v.X_free is not None:
            cons.append(v.X_free <= self.cap_free)
        if v.X_bin is not None and v.y is not None:
            cons.append(v.X_bin <= multiply(self.cap_bin, v.y))
            if self.link_pieces:
                cons.append(
                    v.x[:, list(self.link_pieces)] <= multiply(self.cap_piece, v.y @ self.link_map)
                )
        if self.shared:
            cons.append(v.moved_per_source() <= self.cap_all)
        _check_dpp(self.name, cons)
        return cons

    def update(self, a: Arrays) -> None:
        set_value(self.cap_free, a.cap[:, list(self.free)])
        set_value(self.cap_bin, a.cap_bin)
        set_value(self.cap_piece, a.cap_bin_piece)
        set_value(self.cap_all, a.cap_all)


class MinTicket:
    """X_db ≥ m_b·y_db: a used source moves at least its minimum ticket."""

    name = "min_ticket"

    def __init__(self, st: Structure) -> None:
        self.m = cp.Parameter(
            (st.n_calls, len(st.binary_sources)), nonneg=True, name="min_ticket_usd"
        )

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        if v.X_bin is None or v.y is None:
            return []
        cons = [v.X_bin >= multiply(self.m, v.y)]
        _check_dpp(self.name, cons)
        return cons

    def update(self, a: Arrays) -> None:
        set_value(self.m, a.min_ticket)


class SharedLimits:
    """Σ_{j∈g} Σ_d X_dj ≤ P_g: pre-authorisation groups and shared origin balances."""

    name = "shared_limits"

    def __init__(self, st: Structure) -> None:
        self.M = st.membership(st.groups)
        self.limit = cp.Parameter(len(st.groups), nonneg=True, name="group_limit_usd")

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        if self.M.shape[0] == 0:
            return []
        cons = [sp.csr_matrix(self.M) @ v.moved_per_source() <= self.limit]
        _check_dpp(self.name, cons)
        return cons

    def update(self, a: Arrays) -> None:
        set_value(self.limit, a.group_limit)


class OriginHeadroom:
    """Σ_j debit_oj Σ_d X_dj ≤ E_o − call_o·MM_o: an origin pool never drops below its call."""

    name = "origin_headroom"

    def __init__(self, st: Structure) -> None:
        n_origins = len(st.origins)
        self.debit = cp.Parameter((n_origins, st.n_sources), nonneg=True, name="origin_debit")
        self.headroom = cp.Parameter(n_origins, nonneg=True, name="origin_headroom_usd")

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        if self.debit.shape[0] == 0:
            return []
        cons = [self.debit @ v.moved_per_source() <= self.headroom]
        _check_dpp(self.name, cons)
        return cons

    def update(self, a: Arrays) -> None:
        set_value(self.debit, a.debit)
        set_value(self.headroom, a.headroom)


class ApiWeightBudget:
    """Σ_j (w_j/q_j) Σ_d X_dj ≤ W_v: request weight per venue (requests relaxed to X/q)."""

    name = "api_weight_budget"

    def __init__(self, st: Structure) -> None:
        V = len(st.budgets)
        self.w = cp.Parameter((V, st.n_sources), nonneg=True, name="weight_per_usd")
        self.budget = cp.Parameter(V, nonneg=True, name="weight_budget")

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        if self.w.shape[0] == 0:
            return []
        cons = [self.w @ v.moved_per_source() <= self.budget]
        _check_dpp(self.name, cons)
        return cons

    def update(self, a: Arrays) -> None:
        set_value(self.w, a.weight_per_usd)
        set_value(self.budget, a.budget)


class Cover:
    """Cover the deficit: lhs = Σ_p credit_dp x_dp, rhs = D_d.

    One definition, two uses (STYLE rule 16): ``hard`` adds the shortfall u_d with u_d ≤ ū_d
    (ū = 0 normally: a hard cover; ū = the least achievable shortfall for a partial plan);
    ``soft`` leaves u free and ``penalty`` (Σ u) is minimised to find the best coverage.
    """

    name = "cover"

    def __init__(self, st: Structure) -> None:
        C, P = st.n_calls, st.n_pieces
        self.credit = cp.Parameter((C, P), nonneg=True, name="credit_per_usd")
        self.deficit = cp.Parameter(C, nonneg=True, name="deficit_usd")
        self.max_shortfall = cp.Parameter(C, nonneg=True, name="max_shortfall_usd")
        self.hard_constraint: cp.Constraint | None = None

    def lhs(self, v: RouterVars) -> cp.Expression:
        return v.credit_with(self.credit)

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        self.hard_constraint = self.lhs(v) + v.u >= self.deficit
        cons = [self.hard_constraint, v.u <= self.max_shortfall]
        _check_dpp(self.name, cons)
        return cons

    def build_soft(self, v: RouterVars) -> list[cp.Constraint]:
        cons = [self.lhs(v) + v.u >= self.deficit]
        _check_dpp(self.name, cons)
        return cons

    def penalty(self, v: RouterVars) -> cp.Expression:
        return csum(v.u)

    def update(self, a: Arrays) -> None:
        set_value(self.credit, a.credit)
        set_value(self.deficit, a.deficit)
        set_value(self.max_shortfall, np.zeros_like(a.deficit))


class TierFloors:
    """Strict-policy floors on tier credit, summed over calls (0 when unused).

    Σ_d min(D_d, tier-1 credit_d) ≥ F1 and Σ_d min(D_d, tier-1+2 credit_d) ≥ F12, with the
    minima through the auxiliary s1, s12 ≤ credit, ≤ D. The floors are on the *sum* so a later
    stage may still move a shared source from one call to another at equal tier credit (a
    per-call floor would freeze the first stage's arbitrary split; caught by the joint-call
    oracle test).
    """

    name = "tier_floors"

    def __init__(self, st: Structure) -> None:
        C, P = st.n_calls, st.n_pieces
        self.a1 = cp.Parameter((C, P), nonneg=True, name="credit_tier1")
        self.a12 = cp.Parameter((C, P), nonneg=True, name="credit_tier12")
        self.cap = cp.Parameter(C, nonneg=True, name="floor_cap_usd")
        self.f1 = cp.Parameter(nonneg=True, name="floor_tier1_usd")
        self.f2 = cp.Parameter(nonneg=True, name="floor_tier12_usd")

    def build(self, v: RouterVars) -> list[cp.Constraint]:
        cons = [
            v.s1 <= v.credit_with(self.a1),
            v.s1 <= self.cap,
            csum(v.s1) >= self.f1,
            v.s12 <= v.credit_with(self.a12),
            v.s12 <= self.cap,
            csum(v.s12) >= self.f2,
        ]
        _check_dpp(self.name, cons)
        return cons

    def set_floors(self, f1: np.ndarray, f2: np.ndarray) -> None:
        """Set the floors from per-call amounts (their sums are what is enforced)."""
        set_value(self.f1, max(0.0, float(np.sum(f1))))
        set_value(self.f2, max(0.0, float(np.sum(f2))))

    def update(self, a: Arrays) -> None:
        set_value(self.a1, a.credit_tier1)
        set_value(self.a12, a.credit_tier12)
        set_value(self.cap, a.deficit)
        self.set_floors(np.zeros_like(a.deficit), np.zeros_like(a.deficit))
