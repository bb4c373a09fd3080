"""Numeric arrays of one routing input, and the structure that decides when to rebuild.

A ``RoutingProblem`` is built for a ``Structure`` (how many calls, segments per source, which
sources need binaries, which sources share a limit, an origin pool or a venue budget) and
re-solved for any input of that structure by writing ``Parameter.value`` from the ``Arrays``
computed here. All products of input numbers (λ·L·credit, credit·tier mask, w/q) are formed in
numpy, so no two cvxpy Parameters are ever multiplied (STYLE rule 15; cvxpy DPP rules,
https://www.cvxpy.org/tutorial/dpp/).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from core.routing.sources import RoutingInput

__all__ = [
    "Arrays",
    "SourceTable",
    "Structure",
    "capacities_usd",
    "compile_arrays",
    "structure_of",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Structure:
    """What fixes the shapes and sparsity of the optimisation problem (the cache key)."""

    n_calls: int
    segment_counts: tuple[int, ...]
    binary_sources: tuple[int, ...]
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    origins: tuple[tuple[str, tuple[int, ...]], ...]
    venues: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def n_sources(self) -> int:
        return len(self.segment_counts)

    @property
    def n_pieces(self) -> int:
        return sum(self.segment_counts)

    @property
    def piece_starts(self) -> IntArray:
        """Index of each source's first piece (empty without sources)."""
        out: IntArray = np.cumsum([0, *self.segment_counts], dtype=np.int64)[:-1]
        return out

    @property
    def piece_source(self) -> IntArray:
        return np.repeat(np.arange(self.n_sources, dtype=np.int64), self.segment_counts)

    def aggregation(self, rows: tuple[int, ...] | None = None) -> sp.csr_matrix:
        """0/1 matrix S (sources × pieces): X = x @ S.T sums a source's segments."""
        if rows is None:
            return _full_aggregation(self)
        return sp.csr_matrix(_full_aggregation(self)[list(rows), :])

    def _aggregation(self) -> sp.csr_matrix:
        j = self.piece_source
        return sp.csr_matrix(
            (np.ones(self.n_pieces), (j, np.arange(self.n_pieces))),
            shape=(self.n_sources, self.n_pieces),
        )

    def per_source(self, x: FloatArray) -> FloatArray:
        """Σ over each source's segments: (C, P) piece amounts → (C, J) source amounts."""
        out: FloatArray = np.asarray((self.aggregation() @ x.T).T, dtype=np.float64)
        return out

    def binary_piece_owner(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """First pieces of multi-segment binary sources and, for each, its binary's index b (for
        the links x_dp ≤ min(u_p, M_b)·y_db; see ``terms.Capacity``)."""
        starts = self.piece_starts
        pieces: list[int] = []
        owner: list[int] = []
        for b, j in enumerate(self.binary_sources):
            if self.segment_counts[j] > 1:
                owner.append(b)
                pieces.append(int(starts[j]))
        return tuple(pieces), tuple(owner)

    def binary_piece_links(self) -> tuple[tuple[int, ...], sp.csr_matrix]:
        """``binary_piece_owner`` as the (B × linked pieces) 0/1 map from binaries to pieces."""
        pieces, owner = self.binary_piece_owner()
        link = sp.csr_matrix(
            (np.ones(len(pieces)), (owner, np.arange(len(pieces)))),
            shape=(len(self.binary_sources), len(pieces)),
        )
        return pieces, link

    def membership(self, members: tuple[tuple[str, tuple[int, ...]], ...]) -> sp.csr_matrix:
        rows = [r for r, (_, idx) in enumerate(members) for _ in idx]
        cols = [j for _, idx in members for j in idx]
        return sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(members), self.n_sources)
        )


@functools.lru_cache(maxsize=16)
def _full_aggregation(st: Structure) -> sp.csr_matrix:
    """``Structure.aggregation()``, built once per structure (the matrix is never mutated)."""
    return st._aggregation()


def structure_of(inp: RoutingInput) -> Structure:
    """Derive the structure of ``inp``; inputs with equal structures share one built problem."""
    groups = tuple(
        (g, tuple(j for j, s in enumerate(inp.sources) if g in s.groups))
        for g in sorted(inp.shared_limits_usd)
    )
    origins = tuple(
        (o, tuple(j for j, s in enumerate(inp.sources) if s.origin_pool == o))
        for o in sorted(inp.origin_headroom_usd)
    )
    venues = tuple(
        (v, tuple(j for j, s in enumerate(inp.sources) if s.venue == v))
        for v in sorted(inp.api_weight_budget)
    )
    return Structure(
        n_calls=len(inp.calls),
        segment_counts=tuple(len(s.segments) for s in inp.sources),
        binary_sources=tuple(j for j, s in enumerate(inp.sources) if s.needs_binary),
        groups=tuple(g for g in groups if g[1]),
        origins=tuple(o for o in origins if o[1]),
        venues=tuple(v for v in venues if v[1]),
    )


@dataclass(frozen=True, slots=True)
class Arrays:
    """Every number the optimiser needs, as float64 arrays (calls C, sources J, pieces P)."""

    deficit: FloatArray  # (C,)
    credit: FloatArray  # (C, P) credit per USD, 0 where the source cannot serve the call
    width: FloatArray  # (C, P) segment width, 0 where the source cannot serve the call
    piece_width: FloatArray  # (P,)
    piece_credit: FloatArray  # (P,)
    cost: FloatArray  # (P,)
    latency_credit: FloatArray  # (P,) λ · L_j · credit_p
    tie_break: FloatArray  # (P,) ε · (tier_j − 1)
    cap: FloatArray  # (C, J) Cap_j(T_d), 0 where the source cannot serve the call
    cap_all: FloatArray  # (J,) Cap_j(max_d T_d)
    cap_bin: FloatArray  # (C, B) capacity of binary sources, tightened to what can be useful
    cap_bin_piece: FloatArray  # (C, L) min(width, cap_bin) per linked piece of a binary source
    fee: FloatArray  # (B,)
    min_ticket: FloatArray  # (C, B)
    group_limit: FloatArray  # (G,)
    headroom: FloatArray  # (O,)
    debit: FloatArray  # (O, J)
    budget: FloatArray  # (V,)
    weight_per_usd: FloatArray  # (V, J)
    tier: IntArray  # (J,)
    credit_tier1: FloatArray  # (C, P)
    credit_tier12: FloatArray  # (C, P)


@dataclass(frozen=True, slots=True)
class SourceTable:
    """Per-source and per-piece numbers of an input, read from the sources in one pass.

    NaN stands for "no limit" in the optional limits (``available``, ``preauth``, ``rate``,
    ``per_request``), so ``np.fmin`` ignores it.
    """

    total_width: FloatArray  # (J,)
    latency: FloatArray
    available: FloatArray
    preauth: FloatArray
    rate: FloatArray
    per_request: FloatArray
    fee: FloatArray
    min_ticket: FloatArray
    lowest_credit: FloatArray
    debit: FloatArray
    api_weight: FloatArray
    tier: IntArray
    piece_width: FloatArray  # (P,)
    piece_credit: FloatArray
    piece_cost: FloatArray

    @classmethod
    def of(cls, inp: RoutingInput) -> SourceTable:
        nan = np.nan
        rows = []
        widths: list[float] = []
        credits: list[float] = []
        costs: list[float] = []
        for s in inp.sources:
            seg_w = [g.width_usd for g in s.segments]
            seg_c = [g.credit_per_usd for g in s.segments]
            widths += seg_w
            credits += seg_c
            costs += [g.cost_per_usd for g in s.segments]
            rows.append(
                (
                    sum(seg_w),
                    s.latency_s,
                    nan if s.available_usd is None else s.available_usd,
                    nan if s.preauth_usd is None else s.preauth_usd,
                    nan if s.rate_per_s is None else s.rate_per_s,
                    nan if s.per_request_usd is None else s.per_request_usd,
                    s.fixed_fee_usd,
                    s.min_ticket_usd,
                    seg_c[-1],  # credit is non-increasing: the last segment's is the lowest
                    s.origin_debit_per_usd,
                    s.api_weight,
                    int(s.tier),
                )
            )
        cols = np.array(rows, dtype=np.float64).reshape(len(rows), 12).T
        return cls(
            total_width=cols[0],
            latency=cols[1],
            available=cols[2],
            preauth=cols[3],
            rate=cols[4],
            per_request=cols[5],
            fee=cols[6],
            min_ticket=cols[7],
            lowest_credit=cols[8],
            debit=cols[9],
            api_weight=cols[10],
            tier=cols[11].astype(np.int64),
            piece_width=np.array(widths, dtype=np.float64),
            piece_credit=np.array(credits, dtype=np.float64),
            piece_cost=np.array(costs, dtype=np.float64),
        )


def capacities_usd(
    inp: RoutingInput, deadlines_s: FloatArray, table: SourceTable | None = None
) -> FloatArray:
    """Cap_j(T) for every deadline and source, vectorised (``CollateralSource.capacity_usd``).

    Cap = min(Σ widths, available, P, q·N(T)) with N(T) = 0 if L > T, ⌊(T − L)·ρ⌋ + 1 if
    rate-limited, unbounded otherwise (DESIGN §5.2). Returns (len(deadlines), J).
    """
    t = SourceTable.of(inp) if table is None else table
    static = np.fmin(np.fmin(t.total_width, t.available), t.preauth)
    T = deadlines_s[:, None]
    n_req = np.floor((T - t.latency[None, :]) * t.rate[None, :] + 1e-9) + 1.0
    by_rate = np.where(np.isnan(t.rate) | np.isnan(t.per_request), np.inf, t.per_request * n_req)
    cap = np.minimum(static[None, :], by_rate)
    out: FloatArray = np.where(t.latency[None, :] > T, 0.0, cap)
    return out


def _serves(inp: RoutingInput) -> npt.NDArray[np.bool_]:
    """(C, J): may source j serve call d (its ``calls`` list, or every call)."""
    out = np.ones((len(inp.calls), len(inp.sources)), dtype=bool)
    index = {c.id: d for d, c in enumerate(inp.calls)}
    for j, s in enumerate(inp.sources):
        if s.calls is not None:
            out[:, j] = False
            out[[index[c] for c in s.calls if c in index], j] = True
    return out


def compile_arrays(inp: RoutingInput, st: Structure) -> Arrays:
    """Turn ``inp`` into the numeric arrays of ``st`` (which must be ``structure_of(inp)``)."""
    C, J = st.n_calls, st.n_sources
    j_of = st.piece_source
    t = SourceTable.of(inp)
    piece_width, piece_credit, cost = t.piece_width, t.piece_credit, t.piece_cost
    latency, tier = t.latency, t.tier
    serves = _serves(inp)
    serves_p = serves[:, j_of]
    credit = np.where(serves_p, piece_credit[None, :], 0.0)
    width = np.where(serves_p, piece_width[None, :], 0.0)
    deadlines = np.array([c.deadline_s for c in inp.calls])
    cap = np.where(serves, capacities_usd(inp, deadlines, t), 0.0).reshape(C, J)
    cap_all = capacities_usd(inp, np.array([deadlines.max()]), t)[0]
    b_idx = list(st.binary_sources)
    # Big-M of the binaries: a source never needs to move more than what alone covers the
    # call at its lowest credit rate (or its minimum ticket), so capping Cap·y there is exact
    # and gives HiGHS a much tighter LP relaxation than the raw capacity.
    deficit = np.array([c.deficit_usd for c in inp.calls])
    need = np.maximum(
        deficit[:, None] / t.lowest_credit[None, b_idx] * (1 + 1e-9) + 1e-6,
        t.min_ticket[None, b_idx],
    )
    cap_bin = np.minimum(cap[:, b_idx], need).reshape(C, len(b_idx))
    fee = t.fee[b_idx]
    link_pieces, link_b = st.binary_piece_owner()
    cap_bin_piece = np.minimum(width[:, list(link_pieces)], cap_bin[:, list(link_b)])
    min_ticket = np.where(serves[:, b_idx], t.min_ticket[None, b_idx], 0.0).reshape(C, len(b_idx))
    group_limit = np.array([inp.shared_limits_usd[g] for g, _ in st.groups])
    headroom = np.array([inp.origin_headroom_usd[o] for o, _ in st.origins])
    debit = np.zeros((len(st.origins), J))
    for r, (_, idx) in enumerate(st.origins):
        debit[r, list(idx)] = t.debit[list(idx)]
    budget = np.array([inp.api_weight_budget[v] for v, _ in st.venues])
    weight_per_usd = np.zeros((len(st.venues), J))
    # Requests ≈ X / q (continuous relaxation); without q one request moves everything.
    per_request = np.where(np.isnan(t.per_request), cap_all, t.per_request)
    safe = np.where(per_request > 0, per_request, 1.0)
    w_per_usd = np.where(per_request > 0, t.api_weight / safe, 0.0)
    for r, (_, idx) in enumerate(st.venues):
        weight_per_usd[r, list(idx)] = w_per_usd[list(idx)]
    tier_p = tier[j_of]
    return Arrays(
        deficit=deficit,
        credit=credit,
        width=width,
        piece_width=piece_width,
        piece_credit=piece_credit,
        cost=cost,
        latency_credit=inp.latency_weight_usd_per_usd_s * latency[j_of] * piece_credit,
        tie_break=inp.tie_break_usd_per_usd * (tier_p - 1).astype(np.float64),
        cap=cap,
        cap_all=cap_all,
        cap_bin=cap_bin,
        cap_bin_piece=cap_bin_piece.reshape(C, len(link_pieces)),
        fee=fee.reshape(len(b_idx)),
        min_ticket=min_ticket,
        group_limit=group_limit.reshape(len(st.groups)),
        headroom=headroom.reshape(len(st.origins)),
        debit=debit,
        budget=budget.reshape(len(st.venues)),
        weight_per_usd=weight_per_usd,
        tier=tier,
        credit_tier1=np.where(tier_p[None, :] == 1, credit, 0.0),
        credit_tier12=np.where(tier_p[None, :] <= 2, credit, 0.0),
    )
