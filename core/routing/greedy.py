"""Greedy baseline: cheapest cost per credited USD first (DESIGN §5.2).

It serves two purposes: a yardstick for the optimiser (``benchmarks/router.py`` reports how much
more the greedy plan costs) and the fallback when the solver fails or runs out of time. It
respects every limit the optimiser respects (via ``Room``) but decides one source at a time:
it ranks a source's next segment by (cost per USD + fixed fee spread over the source's usable
amount) / credit per USD, and under ``strict`` ranks by tier first.
"""

from __future__ import annotations

import heapq

import numpy as np

from core.routing.arrays import Arrays, Structure
from core.routing.policies import RawSolution
from core.routing.room import Room
from core.routing.sources import Policy, RoutingInput

__all__ = ["greedy_solution"]

_EPS_USD = 1e-9


def greedy_solution(
    inp: RoutingInput, st: Structure, arrays: Arrays, policy: Policy
) -> RawSolution:
    """Plan greedily, call by call in input order; returns amounts before rounding."""
    room = Room(inp, st, arrays)
    B = len(st.binary_sources)
    bin_pos = {j: b for b, j in enumerate(st.binary_sources)}
    y = np.zeros((st.n_calls, B))
    shortfall = np.zeros(st.n_calls)
    for d, call in enumerate(inp.calls):
        need = call.deficit_usd
        used = np.zeros(st.n_sources, dtype=bool)
        heap: list[tuple[float, float, float, int, int]] = []

        def push(
            j: int,
            d: int = d,
            used: np.ndarray = used,
            heap: list[tuple[float, float, float, int, int]] = heap,
        ) -> None:
            p = room.next_piece(j)
            if p is None or arrays.credit[d, p] <= 0 or arrays.cap[d, j] <= 0:
                return
            s = inp.sources[j]
            unit = arrays.cost[p]
            if not used[j] and s.fixed_fee_usd > 0:
                usable = min(arrays.cap[d, j], s.total_width_usd)
                unit += s.fixed_fee_usd / max(usable, _EPS_USD)
            key = unit / arrays.credit[d, p]
            tier = float(s.tier) if policy is Policy.STRICT else 0.0
            heapq.heappush(heap, (tier, key, s.latency_s, j, p))

        for j in range(st.n_sources):
            push(j)
        while need > _EPS_USD and heap:
            _, _, _, j, p = heapq.heappop(heap)
            if room.next_piece(j) != p:
                continue  # stale entry: the source moved on to its next segment
            s = inp.sources[j]
            avail = room.room(d, j)
            if avail <= _EPS_USD:
                continue
            piece_free = arrays.piece_width[p] - room.piece_used[p]
            take = min(avail, piece_free, need / arrays.credit[d, p])
            if s.needs_binary and not used[j]:
                if avail + _EPS_USD < s.min_ticket_usd:
                    continue  # cannot meet the minimum ticket: skip this source for this call
                take = max(take, s.min_ticket_usd)
            need -= room.add(d, j, take)
            if s.needs_binary:
                y[d, bin_pos[j]] = 1.0
            used[j] = True
            push(j)
        shortfall[d] = max(need, 0.0)
    return RawSolution(
        x=room.x, y=y if B else None, shortfall=shortfall, solves=0, stages=("greedy",)
    )
