"""The hot path's solver: one reused ``highspy.Highs`` object, a per-solve time limit, and a
small branch and bound over the binaries on the warm-started LP.

Why a reused object: cvxpy's HiGHS interface builds a new solver and re-wraps results on
every call, which costs more than the LP itself at 100 sources. Why a per-solve limit set by
hand: HiGHS compares ``time_limit`` with the object's *run clock*, which keeps adding up over
every ``run()`` of the object (ERGO-Code/HiGHS#1331 and #1477; the C API's
``Highs_zeroAllClocks`` has no highspy binding in 1.16). A router living in a monitor for
hours would otherwise pass the limit once and then stop every new solve at once ("time limit
reached"). ``HighsSolver`` therefore sets the limit, before each ``run()``, to the clock's
current reading plus what is left of this solve's own budget.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
import numpy.typing as npt

from core.routing.cvx import new_highs
from core.routing.fastdata import LpArrays

__all__ = ["HighsResult", "HighsSolver"]

FloatArray = npt.NDArray[np.float64]

# A relaxed y this close to 0/1 is taken as integral: with Cap ≤ 1e7 USD it moves ≤ 0.01 USD
# more than the rounded y allows, below every venue step, and the plan rounds it away.
INTEGRAL_TOL = 1e-9
# Past this many nodes the small search hands over to HiGHS's own MIP.
_BB_MAX_NODES = 400
# A node whose LP bound is within this fraction of the incumbent cannot improve it by more than
# 1e-7 of the cost (1e-4 USD on a 1,000 USD plan): pruned.
_BB_PRUNE_REL = 1e-7
# Routing MILPs are solved at the root node; HiGHS's symmetry detection only adds start-up
# time there (measured: ~27 → ~12 ms at 100 sources). Optimality is unchanged.
MIP_SPEED_OPTIONS: dict[str, object] = {"mip_detect_symmetry": False}

_OPTIMAL = highspy.HighsModelStatus.kOptimal
_INFEASIBLE = (
    highspy.HighsModelStatus.kInfeasible,
    highspy.HighsModelStatus.kUnboundedOrInfeasible,
)
_TIME_LIMIT = highspy.HighsModelStatus.kTimeLimit


@dataclass(frozen=True, slots=True)
class HighsResult:
    """``status`` is ``optimal``, ``infeasible``, ``time_limit`` or ``failed`` (with ``reason``);
    ``x`` the column values of the LP that was passed (``None`` unless optimal)."""

    status: str
    x: FloatArray | None = None
    reason: str = ""


def _highs_lp(lpa: LpArrays) -> tuple[Any, FloatArray, FloatArray]:
    """``lpa`` as a ``highspy.HighsLp`` (binaries bounded to [0, 1]); also the column bounds."""
    n, m = lpa.n_cols, lpa.n_rows
    col_lower = lpa.col_lower.copy()
    col_upper = lpa.col_upper.copy()
    for i in lpa.bool_idx:
        col_lower[i] = max(col_lower[i], 0.0)
        col_upper[i] = min(col_upper[i], 1.0)
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = m
    lp.col_cost_ = lpa.c
    lp.row_lower_ = np.where(np.isinf(lpa.row_lower), -inf, lpa.row_lower)
    lp.row_upper_ = lpa.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = lpa.a_start
    lp.a_matrix_.index_ = lpa.a_index
    lp.a_matrix_.value_ = lpa.a_value
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = m
    lp.col_lower_ = np.where(np.isinf(col_lower), -inf, col_lower)
    lp.col_upper_ = np.where(np.isinf(col_upper), inf, col_upper)
    return lp, col_lower, col_upper


class HighsSolver:
    """Solve ``LpArrays`` (LPs, or MILPs with binaries) on one reused HiGHS object.

    Each ``solve`` has its own budget of ``time_limit_s`` seconds, however long the object has
    lived (see the module docstring).
    """

    def __init__(self, *, time_limit_s: float, mip_rel_gap: float) -> None:
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap
        self.h = new_highs()
        self.h.setOptionValue("output_flag", False)
        self.bb_nodes_last = 0
        self.runs = 0
        self._start = 0.0

    # ------------------------------------------------------------------ one run

    def seconds_left(self) -> float:
        """What is left of the current solve's budget."""
        return self.time_limit_s - (time.perf_counter() - self._start)

    def run(self) -> Any:
        """``h.run()`` limited to what is left of this solve's budget; returns the status."""
        h = self.h
        # the limit is compared with the object's accumulated run clock: offset it
        h.setOptionValue("time_limit", float(h.getRunTime()) + max(0.0, self.seconds_left()))
        self.runs += 1
        h.run()
        return h.getModelStatus()

    def _col_values(self) -> FloatArray:
        return np.asarray(self.h.getSolution().col_value, dtype=np.float64)

    def _result(self, status: Any) -> HighsResult:
        if status == _OPTIMAL:
            return HighsResult("optimal", self._col_values())
        if status in _INFEASIBLE:
            return HighsResult("infeasible")
        if status == _TIME_LIMIT:
            return HighsResult("time_limit", reason=self._time_limit_reason())
        return HighsResult("failed", reason=f"HiGHS status {self.h.modelStatusToString(status)}")

    def _time_limit_reason(self) -> str:
        return f"HiGHS hit the per-solve time limit of {self.time_limit_s} s"

    # ------------------------------------------------------------------ solve

    def solve(self, lpa: LpArrays) -> HighsResult:
        """Solve ``lpa`` within ``time_limit_s``: LP directly; with binaries, branch and bound
        first and HiGHS's MIP only when the small search gives up."""
        self._start = time.perf_counter()
        self.bb_nodes_last = 0
        lp, col_lower, col_upper = _highs_lp(lpa)
        h = self.h
        h.clearModel()
        h.setOptionValue("presolve", "off")  # costs more than it saves on these small LPs
        h.passModel(lp)
        if not lpa.bool_idx:
            return self._result(self.run())
        found = self._branch_and_bound(list(lpa.bool_idx), col_lower, col_upper)
        if found is not None:
            return found
        return self._mip(lp, list(lpa.bool_idx), lpa.n_cols)

    def _mip(self, lp: Any, bool_idx: list[int], n: int) -> HighsResult:
        """HiGHS's own MIP on the same model (the fallback of the small search)."""
        integrality = [highspy.HighsVarType.kContinuous] * n
        for i in bool_idx:
            integrality[i] = highspy.HighsVarType.kInteger
        lp.integrality_ = integrality
        h = self.h
        h.clearModel()
        h.setOptionValue("presolve", "choose")
        h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
        for name, value in MIP_SPEED_OPTIONS.items():
            h.setOptionValue(name, value)
        h.passModel(lp)
        return self._result(self.run())

    def _branch_and_bound(
        self, bins: list[int], col_lower: FloatArray, col_upper: FloatArray
    ) -> HighsResult | None:
        """Branch and bound over the binaries (``_Search``); ``None`` hands over to HiGHS's MIP."""
        return _Search(self, np.asarray(bins, dtype=np.int32), col_lower, col_upper).run()


class _GiveUp(Exception):
    """The small search stops: a time limit (``result``) or a hand-over to HiGHS's MIP."""

    def __init__(self, result: HighsResult | None) -> None:
        super().__init__()
        self.result = result


# (parent LP bound, insertion order, fixings {binary position: 0/1})
_Node = tuple[float, int, dict[int, float]]


class _Search:
    """Branch and bound over the binaries, on HiGHS's warm-started LP.

    Routing MILPs have few binaries (fixed fees, minimum tickets) and, with the first-segment
    links of ``terms.Capacity``, the LP relaxation decides almost all of them; re-solving the
    LP with one more binary fixed is a few dual-simplex iterations from the previous basis,
    far cheaper than HiGHS's MIP start-up (presolve, probing, cuts: ~10–40 ms at 100
    sources). Exact: a node is pruned only when its LP bound is no better than the incumbent
    (Land & Doig 1960; Wolsey, *Integer Programming*, ch. 7). Rounding heuristics give an
    early incumbent; nodes are explored depth first until one exists, best bound first after
    (fewest nodes to prove optimality). ``run`` returns ``None`` to hand over to HiGHS's MIP
    when a node LP fails or the search exceeds ``_BB_MAX_NODES``.
    """

    def __init__(
        self,
        solver: HighsSolver,
        idx: npt.NDArray[np.int32],
        col_lower: FloatArray,
        col_upper: FloatArray,
    ) -> None:
        self.solver = solver
        self.idx = idx
        self.lo0 = col_lower[idx].copy()
        self.up0 = col_upper[idx].copy()
        self.best_obj = math.inf
        self.best: FloatArray | None = None
        self.open: list[_Node] = []
        self.heap_mode = False
        self.counter = 0
        self.time_limit = HighsResult("time_limit", reason=solver._time_limit_reason())

    def run(self) -> HighsResult | None:
        try:
            root_obj, root = self.solve_root()
            if self.fractional(root).max() <= INTEGRAL_TOL:
                return HighsResult("optimal", root)
            self.round_for_incumbent(root)
            self.branch(root_obj, {}, root)
            self.explore()
        except _GiveUp as stop:
            return stop.result
        return HighsResult("infeasible") if self.best is None else HighsResult("optimal", self.best)

    # ---------------------------------------------------------------- node LPs

    def node(self, fix: dict[int, float]) -> tuple[str, float, FloatArray]:
        """Solve the LP with the binaries in ``fix`` fixed: ``optimal`` or ``infeasible``."""
        solver = self.solver
        if solver.seconds_left() <= 0:
            raise _GiveUp(self.time_limit)
        solver.bb_nodes_last += 1
        lo = self.lo0.copy()
        up = self.up0.copy()
        for k, value in fix.items():
            lo[k] = up[k] = value
        solver.h.changeColsBounds(len(self.idx), self.idx, lo, up)
        res = solver._result(solver.run())
        if res.status == "time_limit":
            raise _GiveUp(self.time_limit)
        if res.status == "failed":
            raise _GiveUp(None)
        if res.x is None:
            return res.status, math.inf, np.zeros(0)
        return "optimal", float(solver.h.getInfo().objective_function_value), res.x

    def solve_root(self) -> tuple[float, FloatArray]:
        status, obj, root = self.node({})
        if status == "infeasible":
            raise _GiveUp(HighsResult("infeasible"))
        return obj, root

    def fractional(self, sol: FloatArray) -> FloatArray:
        y = sol[self.idx]
        frac: FloatArray = np.minimum(np.abs(y), np.abs(1.0 - y))
        return frac

    def prunable(self, bound: float) -> bool:
        return bound >= self.best_obj - _BB_PRUNE_REL * max(1.0, abs(self.best_obj))

    # ---------------------------------------------------------------- search

    def round_for_incumbent(self, root: FloatArray) -> None:
        """Every fractional binary to 0 (drop the half-used fee sources), then to 1; the
        others keep their integral root values."""
        frac = self.fractional(root)
        y_root = root[self.idx]
        for value in (0.0, 1.0):
            fix = {
                k: (value if frac[k] > INTEGRAL_TOL else float(round(y_root[k])))
                for k in range(len(self.idx))
            }
            status, obj, sol = self.node(fix)
            if status == "optimal" and obj < self.best_obj:
                self.best_obj, self.best = obj, sol

    def branch(self, parent_obj: float, fix: dict[int, float], sol: FloatArray) -> None:
        """Two children on the most fractional binary; the nearer rounding is popped first."""
        y = sol[self.idx]
        k = int(np.argmax(self.fractional(sol)))
        nearer = 1.0 if y[k] >= 0.5 else 0.0
        for value in (1.0 - nearer, nearer):
            self.counter += 1
            node = (parent_obj, self.counter, {**fix, k: value})
            if self.heap_mode:
                heapq.heappush(self.open, node)
            else:
                self.open.append(node)

    def explore(self) -> None:
        while self.open:
            if self.solver.seconds_left() <= 0:
                raise _GiveUp(self.time_limit)
            if self.solver.bb_nodes_last >= _BB_MAX_NODES:
                raise _GiveUp(None)
            if not self.heap_mode and self.best is not None:
                heapq.heapify(self.open)
                self.heap_mode = True
            bound, _, fix = heapq.heappop(self.open) if self.heap_mode else self.open.pop()
            if self.prunable(bound):
                continue  # the parent's LP bound already cannot beat the incumbent
            status, obj, sol = self.node(fix)
            if status == "infeasible" or self.prunable(obj):
                continue
            if self.fractional(sol).max() <= INTEGRAL_TOL:
                self.best_obj, self.best = obj, sol
                continue
            self.branch(obj, fix, sol)
