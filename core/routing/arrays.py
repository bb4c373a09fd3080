"""Numeric arrays of one routing input, and the structure that decides when to rebuild.

A ``RoutingProblem`` is built for a ``Structure`` (how many calls, segments per source, which
sources need binaries, which sources share a limit, an origin pool or a venue budget) and
re-solved for any input of that structure by writing ``Parameter.value`` from the ``Arrays``
computed here. All products of input numbers (λ·L·credit, credit·tier mask, w/q) are formed in
numpy, so no two cvxpy Parameters are ever multiplied (STYLE rule 15; cvxpy DPP rules,
https://www.cvxpy.org/tutorial/dpp/).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from core.routing.sources import RoutingInput

__all__ = ["Arrays", "Structure", "compile_arrays", "structure_of"]

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
    def piece_source(self) -> IntArray:
        return np.repeat(np.arange(self.n_sources, dtype=np.int64), self.segment_counts)

    def aggregation(self, rows: tuple[int, ...] | None = None) -> sp.csr_matrix:
        """0/1 matrix S (sources × pieces): X = x @ S.T sums a source's segments."""
        j = self.piece_source
        full = sp.csr_matrix(
            (np.ones(self.n_pieces), (j, np.arange(self.n_pieces))),
            shape=(self.n_sources, self.n_pieces),
        )
        if rows is None:
            return full
        return sp.csr_matrix(full[list(rows), :])

    def per_source(self, x: FloatArray) -> FloatArray:
        """Σ over each source's segments: (C, P) piece amounts → (C, J) source amounts."""
        out: FloatArray = np.asarray((self.aggregation() @ x.T).T, dtype=np.float64)
        return out

    def binary_piece_links(self) -> tuple[tuple[int, ...], sp.csr_matrix]:
        """Pieces of multi-segment binary sources, and the (B × those pieces) 0/1 map from
        each binary to its pieces (for the per-piece links x_dp ≤ min(u_p, M_b)·y_db)."""
        starts = np.concatenate([[0], np.cumsum(self.segment_counts)[:-1]]).astype(int)
        pieces: list[int] = []
        rows: list[int] = []
        for b, j in enumerate(self.binary_sources):
            if self.segment_counts[j] > 1:
                for k in range(self.segment_counts[j]):
                    rows.append(b)
                    pieces.append(int(starts[j]) + k)
        link = sp.csr_matrix(
            (np.ones(len(pieces)), (rows, np.arange(len(pieces)))),
            shape=(len(self.binary_sources), len(pieces)),
        )
        return tuple(pieces), link

    def membership(self, members: tuple[tuple[str, tuple[int, ...]], ...]) -> sp.csr_matrix:
        rows = [r for r, (_, idx) in enumerate(members) for _ in idx]
        cols = [j for _, idx in members for j in idx]
        return sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(members), self.n_sources)
        )


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


def capacities_usd(inp: RoutingInput, deadlines_s: FloatArray) -> FloatArray:
    """Cap_j(T) for every deadline and source, vectorised (``CollateralSource.capacity_usd``).

    Cap = min(Σ widths, available, P, q·N(T)) with N(T) = 0 if L > T, ⌊(T − L)·ρ⌋ + 1 if
    rate-limited, unbounded otherwise (DESIGN §5.2). Returns (len(deadlines), J).
    """
    srcs = inp.sources
    nan = np.nan

    def opt(values: list[float | None]) -> FloatArray:
        return np.array([nan if v is None else v for v in values], dtype=np.float64)

    total = np.array([s.total_width_usd for s in srcs])
    latency = np.array([s.latency_s for s in srcs])
    available = opt([s.available_usd for s in srcs])
    preauth = opt([s.preauth_usd for s in srcs])
    rate = opt([s.rate_per_s for s in srcs])
    per_request = opt([s.per_request_usd for s in srcs])
    static = np.fmin(np.fmin(total, available), preauth)  # fmin ignores the NaN "no limit"
    T = deadlines_s[:, None]
    n_req = np.floor((T - latency[None, :]) * rate[None, :] + 1e-9) + 1.0
    by_rate = np.where(np.isnan(rate) | np.isnan(per_request), np.inf, per_request * n_req)
    cap = np.minimum(static[None, :], by_rate)
    return np.where(latency[None, :] > T, 0.0, cap)


def compile_arrays(inp: RoutingInput, st: Structure) -> Arrays:
    """Turn ``inp`` into the numeric arrays of ``st`` (which must be ``structure_of(inp)``)."""
    C, J = st.n_calls, st.n_sources
    j_of = st.piece_source
    piece_width = np.array([g.width_usd for s in inp.sources for g in s.segments])
    piece_credit = np.array([g.credit_per_usd for s in inp.sources for g in s.segments])
    cost = np.array([g.cost_per_usd for s in inp.sources for g in s.segments])
    latency = np.array([s.latency_s for s in inp.sources])
    tier = np.array([int(s.tier) for s in inp.sources], dtype=np.int64)
    serves = np.array([[s.serves(c.id) for s in inp.sources] for c in inp.calls], dtype=bool)
    serves_p = serves[:, j_of]
    credit = np.where(serves_p, piece_credit[None, :], 0.0)
    width = np.where(serves_p, piece_width[None, :], 0.0)
    deadlines = np.array([c.deadline_s for c in inp.calls])
    cap = np.where(serves, capacities_usd(inp, deadlines), 0.0).reshape(C, J)
    cap_all = capacities_usd(inp, np.array([deadlines.max()]))[0]
    b_idx = list(st.binary_sources)
    # Big-M of the binaries: a source never needs to move more than what alone covers the
    # call at its lowest credit rate (or its minimum ticket), so capping Cap·y there is exact
    # and gives HiGHS a much tighter LP relaxation than the raw capacity.
    deficit = np.array([c.deficit_usd for c in inp.calls])
    cap_bin = np.zeros((C, len(b_idx)))
    for b, j in enumerate(b_idx):
        s = inp.sources[j]
        lowest = min(g.credit_per_usd for g in s.segments)
        need = np.maximum(deficit / lowest * (1 + 1e-9) + 1e-6, s.min_ticket_usd)
        cap_bin[:, b] = np.minimum(cap[:, j], need)
    fee = np.array([inp.sources[j].fixed_fee_usd for j in b_idx])
    link_pieces, link_map = st.binary_piece_links()
    link_b = np.asarray(link_map.argmax(axis=0)).ravel() if link_pieces else np.zeros(0, int)
    cap_bin_piece = np.minimum(width[:, list(link_pieces)], cap_bin[:, link_b])
    min_ticket = np.where(
        serves[:, b_idx], np.array([inp.sources[j].min_ticket_usd for j in b_idx])[None, :], 0.0
    ).reshape(C, len(b_idx))
    group_limit = np.array([inp.shared_limits_usd[g] for g, _ in st.groups])
    headroom = np.array([inp.origin_headroom_usd[o] for o, _ in st.origins])
    debit = np.zeros((len(st.origins), J))
    for r, (_, idx) in enumerate(st.origins):
        for j in idx:
            debit[r, j] = inp.sources[j].origin_debit_per_usd
    budget = np.array([inp.api_weight_budget[v] for v, _ in st.venues])
    weight_per_usd = np.zeros((len(st.venues), J))
    for r, (_, idx) in enumerate(st.venues):
        for j in idx:
            s = inp.sources[j]
            # Requests ≈ X / q (continuous relaxation); without q one request moves everything.
            per_request = s.per_request_usd if s.per_request_usd is not None else cap_all[j]
            weight_per_usd[r, j] = s.api_weight / per_request if per_request > 0 else 0.0
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
