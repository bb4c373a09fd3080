"""Remaining room of each source under every limit, for the greedy baseline and plan top-ups.

It mirrors, in plain numpy, the constraints the optimiser enforces (capacity per call and over
all calls, segment widths filled in order, shared limits, origin headroom, API weight budgets),
so a greedy or topped-up plan never breaks a limit the optimiser would have respected.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.routing.arrays import Arrays, Structure
from core.routing.sources import RoutingInput

__all__ = ["Room"]

_EPS_USD = 1e-9


@dataclass(frozen=True, slots=True)
class _Layout:
    """Which pieces, shared limits, origin pools and venues each source has (per structure)."""

    starts: npt.NDArray[np.int64]
    piece_range: tuple[range, ...]
    group_of: tuple[tuple[int, ...], ...]
    origin_of: tuple[tuple[int, ...], ...]
    venue_of: tuple[tuple[int, ...], ...]


@functools.lru_cache(maxsize=16)
def _layout(st: Structure) -> _Layout:
    J = st.n_sources
    starts = st.piece_starts

    def members(table: tuple[tuple[str, tuple[int, ...]], ...]) -> tuple[tuple[int, ...], ...]:
        of: list[list[int]] = [[] for _ in range(J)]
        for k, (_, idx) in enumerate(table):
            for j in idx:
                of[j].append(k)
        return tuple(tuple(x) for x in of)

    return _Layout(
        starts=starts,
        piece_range=tuple(
            range(int(starts[j]), int(starts[j]) + st.segment_counts[j]) for j in range(J)
        ),
        group_of=members(st.groups),
        origin_of=members(st.origins),
        venue_of=members(st.venues),
    )


class Room:
    """Usage so far and the room left, per (call, source)."""

    def __init__(self, inp: RoutingInput, st: Structure, arrays: Arrays) -> None:
        self.inp = inp
        self.st = st
        self.a = arrays
        C, J, P = st.n_calls, st.n_sources, st.n_pieces
        self.X = np.zeros((C, J))
        self.x = np.zeros((C, P))
        self.piece_used = np.zeros(P)
        layout = _layout(st)
        self.starts = layout.starts
        self.piece_range = layout.piece_range
        self.group_of = layout.group_of
        self.origin_of = layout.origin_of
        self.venue_of = layout.venue_of
        self.group_used = np.zeros(len(st.groups))
        self.origin_used = np.zeros(len(st.origins))
        self.weight_used = np.zeros(len(st.venues))

    def next_piece(self, j: int) -> int | None:
        """The first segment of ``j`` not yet full (segments fill in order: concavity)."""
        for p in self.piece_range[j]:
            if self.piece_used[p] < self.a.piece_width[p] - _EPS_USD:
                return p
        return None

    def limits(self, d: int, j: int) -> dict[str, float]:
        """Room left for (call d, source j) under each named limit, in USD moved."""
        with np.errstate(over="ignore", divide="ignore"):
            return self._limits(d, j)

    def _limits(self, d: int, j: int) -> dict[str, float]:
        a = self.a
        out = {
            "capacity": a.cap[d, j] - self.X[d, j],
            "capacity_all_calls": a.cap_all[j] - self.X[:, j].sum(),
            "segments": float(
                sum(a.piece_width[p] - self.piece_used[p] for p in self.piece_range[j])
            ),
        }
        for g in self.group_of[j]:
            out[f"shared_limit:{self.st.groups[g][0]}"] = a.group_limit[g] - self.group_used[g]
        for o in self.origin_of[j]:
            debit = a.debit[o, j]
            if debit > 0:
                out[f"origin_call_level:{self.st.origins[o][0]}"] = (
                    a.headroom[o] - self.origin_used[o]
                ) / debit
        for r in self.venue_of[j]:
            w = a.weight_per_usd[r, j]
            if w > 0:
                out[f"api_weight:{self.st.venues[r][0]}"] = (a.budget[r] - self.weight_used[r]) / w
        return out

    def room_vector(self, d: int) -> np.ndarray:
        """Room left for call d from every source at once (the vectorised ``room``)."""
        # a tiny debit or weight per USD leaves (near) unbounded room: inf is the right answer
        with np.errstate(over="ignore", divide="ignore"):
            return self._room_vector(d)

    def _room_vector(self, d: int) -> np.ndarray:
        a = self.a
        J = self.st.n_sources
        piece_left = a.piece_width - self.piece_used
        seg_left = np.add.reduceat(piece_left, self.starts) if J else np.zeros(0)
        room = np.minimum.reduce([a.cap[d] - self.X[d], a.cap_all - self.X.sum(axis=0), seg_left])
        for g, (_, idx) in enumerate(self.st.groups):
            ids = list(idx)
            room[ids] = np.minimum(room[ids], a.group_limit[g] - self.group_used[g])
        for o, (_, idx) in enumerate(self.st.origins):
            ids = [j for j in idx if a.debit[o, j] > 0]
            if ids:
                left = (a.headroom[o] - self.origin_used[o]) / a.debit[o, ids]
                room[ids] = np.minimum(room[ids], left)
        for r, (_, idx) in enumerate(self.st.venues):
            ids = [j for j in idx if a.weight_per_usd[r, j] > 0]
            if ids:
                left = (a.budget[r] - self.weight_used[r]) / a.weight_per_usd[r, ids]
                room[ids] = np.minimum(room[ids], left)
        room[a.credit[d, self.starts] <= 0] = 0.0
        out: np.ndarray = np.maximum(room, 0.0)
        return out

    def room(self, d: int, j: int) -> float:
        if self.a.credit[d, self.piece_range[j][0]] <= 0:
            return 0.0
        return max(0.0, min(self.limits(d, j).values()))

    def add(self, d: int, j: int, amount_usd: float) -> float:
        """Move ``amount_usd`` more from ``j`` to ``d``, filling segments in order; return credit."""
        left = amount_usd
        credit = 0.0
        for p in self.piece_range[j]:
            free = self.a.piece_width[p] - self.piece_used[p]
            if free <= _EPS_USD:
                continue
            take = min(free, left)
            self.piece_used[p] += take
            self.x[d, p] += take
            credit += take * self.a.credit[d, p]
            left -= take
            if left <= _EPS_USD:
                break
        moved = amount_usd - max(left, 0.0)
        self.X[d, j] += moved
        for g in self.group_of[j]:
            self.group_used[g] += moved
        for o in self.origin_of[j]:
            self.origin_used[o] += moved * self.a.debit[o, j]
        for r in self.venue_of[j]:
            self.weight_used[r] += moved * self.a.weight_per_usd[r, j]
        return credit

    @classmethod
    def from_solution(cls, inp: RoutingInput, st: Structure, arrays: Arrays, x: np.ndarray) -> Room:
        """Room after the amounts ``x`` (calls × pieces) are already planned."""
        room = cls(inp, st, arrays)
        room.x = x.copy()
        room.piece_used = x.sum(axis=0)
        room.X = st.per_source(x)
        moved = room.X.sum(axis=0)
        for g, (_, idx) in enumerate(st.groups):
            room.group_used[g] = moved[list(idx)].sum()
        for o in range(len(st.origins)):
            room.origin_used[o] = float(arrays.debit[o] @ moved)
        for r in range(len(st.venues)):
            room.weight_used[r] = float(arrays.weight_per_usd[r] @ moved)
        return room
