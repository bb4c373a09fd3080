"""What is too small to move: dust deficits and steps not worth a request.

Two rules, both in credited USD, both reported in the plan's ``notes``:

* **Dust** (``dust_threshold_usd``). Venues move whole steps; a deficit below the smallest
  credit one step of any eligible source can bring (``step_usd × credit_per_usd`` of its first
  segment), or below the desk's ``dust_usd`` (default one cent), cannot be planned any finer:
  the call is *covered*, nothing is moved for it. The same threshold, raised to
  ``min_step_frac`` of the deficit, forgives a remainder left after planning when no source
  has room for one more step (or when the only step that could close it is not worth a
  request, below). A source is eligible for a call when it may serve it and can deliver at
  least its minimum ticket by the deadline.
* **Minimum useful ticket** (``useful_credit_usd``). A step is one request (or more) with its
  own latency, rate-limit token, API weight, audit row and failure mode; a 0.01 USD transfer
  next to a 500,000 USD swap is not worth one. A step is below its minimum useful ticket when
  its credit is below the largest of: the desk's dust, its fixed fee (paying more in fee than
  it credits), ``min_step_frac`` of its call's deficit (default 1e-6), and its share of the
  venue's API weight budget applied to the deficit (``D × requests·w / W``: it spends a larger
  share of the budget than the share of the call it covers). Such a step is folded into the
  call's other steps when they have room (at no more than a cent, or its fee, of extra cost),
  or dropped when what it leaves uncovered is dust; otherwise it stays, and the plan says why.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.routing.arrays import Arrays
from core.routing.sources import RoutingInput

__all__ = ["dust_threshold_usd", "useful_credit_usd"]

FloatArray = npt.NDArray[np.float64]


def dust_threshold_usd(inp: RoutingInput, arrays: Arrays) -> FloatArray:
    """Per call, the credit below which a deficit (or a remainder) is dust.

    ``max(dust_usd, min_step_frac × deficit, min over eligible sources of step_usd ×
    first-segment credit)``; without an eligible source the last term is left out. (A deficit
    is never below ``min_step_frac`` of itself: that term only forgives remainders.)
    """
    out = np.maximum(inp.dust_usd, inp.min_step_frac * arrays.deficit)
    if not inp.sources:
        return out
    step = np.array([s.step_usd for s in inp.sources])
    ticket = np.array([s.min_ticket_usd for s in inp.sources])
    starts = np.cumsum([0, *(len(s.segments) for s in inp.sources)])[:-1]
    first_credit = arrays.credit[:, starts]  # (C, J), 0 where j cannot serve d
    eligible = (arrays.cap > 0) & (arrays.cap >= ticket[None, :]) & (first_credit > 0)
    one_step = np.where(eligible, step[None, :] * first_credit, np.inf)
    smallest = one_step.min(axis=1)
    return np.where(np.isfinite(smallest), np.maximum(out, smallest), out)


def useful_credit_usd(inp: RoutingInput, arrays: Arrays, d: int, j: int, requests: int) -> float:
    """The least credit a step of source ``j`` for call ``d`` must bring to be worth sending."""
    s = inp.sources[j]
    deficit = float(arrays.deficit[d])
    floor = max(inp.dust_usd, s.fixed_fee_usd, inp.min_step_frac * deficit)
    if s.api_weight > 0 and s.venue and s.venue in inp.api_weight_budget:
        budget = inp.api_weight_budget[s.venue]
        if budget > 0:
            floor = max(floor, deficit * requests * s.api_weight / budget)
    return floor
