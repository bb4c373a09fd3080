"""The router's optimisation problem (DESIGN §5.2): built once, updated by value, re-solved.

``RoutingProblem`` owns these ``cp.Problem``s over the same variables and Parameters:

* ``main``   minimise cost + λ·latency + ε·tier subject to cover (shortfall ≤ ū), tier floors
  and every capacity constraint;
* ``cover``  minimise the total shortfall Σ u (only needed when the deficit cannot be covered);
* ``stage``  maximise capped tier credit (the strict policy's lexicographic stages);
* ``main_relaxed`` (only with binaries) the LP relaxation of ``main``, which the cvxpy
  back-end tries first: when its y is already 0/1 it is the MILP optimum.

All are DPP (asserted at build), so a re-solve with new numbers reuses cvxpy's cached
parameter-to-matrix map instead of canonicalising again. Two back-ends solve them:

* ``Backend.CVXPY``   ``problem.solve(solver=cp.HIGHS)``: the model of record;
* ``Backend.HIGHSPY`` the hot path: the same cached, Parameter-updated matrices
  (``fastdata.FastProblemData``, a checked twin of ``get_problem_data``), one-variable rows
  folded into bounds and columns fixed at zero dropped, handed to one reused
  ``highspy.Highs``; binaries by a small warm-started branch and bound. cvxpy's HiGHS
  interface builds a new solver object and re-wraps results on every call, which costs more
  than the LP itself at 100 sources; ``tests/routing/test_routing_oracles.py`` holds both
  back-ends equal (and each equal to a from-scratch plain cvxpy model).
"""

from __future__ import annotations

import heapq
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import cvxpy as cp
import highspy
import numpy as np
import numpy.typing as npt

from core.errors import RoutingError
from core.routing.arrays import Arrays, Structure, compile_arrays, structure_of
from core.routing.backends import Backend
from core.routing.cvx import csum, is_dpp, new_highs, solve_highs
from core.routing.fastdata import (
    FastProblemData,
    LpArrays,
    drop_zero_columns,
    fold_singleton_rows,
    lp_from_problem_data,
)
from core.routing.sources import RoutingInput
from core.routing.terms import (
    ApiWeightBudget,
    Capacity,
    ConstraintTerm,
    Cover,
    FixedFees,
    LatencyPenalty,
    LinearCost,
    MinTicket,
    ObjectiveTerm,
    OriginHeadroom,
    RouterVars,
    SegmentWidths,
    SharedLimits,
    TierFloors,
    TierStageCredit,
    TierTieBreak,
)

__all__ = [
    "Backend",
    "Failed",
    "Infeasible",
    "Outcome",
    "RoutingProblem",
    "Solved",
    "silence_highs_banner",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_TIME_LIMIT_S = 2.0
# HiGHS's default MIP gap (1e-4 relative) would leave fixed-fee decisions up to 0.01 % off
# optimal; routing MILPs are tiny, so we ask for (near) proof of optimality.
DEFAULT_MIP_REL_GAP = 1e-9
# A relaxed y this close to 0/1 is taken as integral: with Cap ≤ 1e7 USD it moves ≤ 0.01 USD
# more than the rounded y allows, below every venue step, and the plan rounds it away.
_INTEGRAL_TOL = 1e-9
# Routing MILPs are solved at the root node; HiGHS's symmetry detection and primal heuristics
# only add start-up time there (measured: ~27 → ~12 ms at 100 sources). Optimality is unchanged.
_BB_MAX_NODES = 400
# A node whose LP bound is within this fraction of the incumbent cannot improve it by more than
# 1e-7 of the cost (1e-4 USD on a 1,000 USD plan): pruned.
_BB_PRUNE_REL = 1e-7
_MIP_SPEED_OPTIONS: dict[str, object] = {"mip_detect_symmetry": False}


@dataclass(frozen=True, slots=True)
class Solved:
    """An optimal solution: variable values by name (``x``, ``y``, ``u``, ``s``)."""

    values: dict[str, FloatArray]


@dataclass(frozen=True, slots=True)
class Infeasible:
    """The solver proved the problem infeasible."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The solver errored, hit its time limit or returned an inaccurate status."""

    reason: str


Outcome = Solved | Infeasible | Failed

_BANNER_SILENCED = False


def silence_highs_banner() -> None:
    """Swallow the banner HiGHS prints to stdout on the first ``Highs()`` of a process.

    ``pmr route`` prints the plan as JSON on stdout; a banner line in front would break every
    consumer. The banner is printed once per process, so one construction with fd 1 pointed at
    /dev/null silences it for good.
    """
    global _BANNER_SILENCED
    if _BANNER_SILENCED:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            new_highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SILENCED = True


class RoutingProblem:
    """One built routing problem for a fixed ``Structure``; ``update`` then ``solve_*``.

    Examples
    --------
    >>> from core.routing.sources import CollateralSource, Deficit, RoutingInput, Segment
    >>> inp = RoutingInput(
    ...     calls=(Deficit("c", 100.0, 60.0),),
    ...     sources=(CollateralSource("s", 3, 1.0, (Segment(500.0, 1.0, 0.001),)),),
    ... )
    >>> rp = RoutingProblem(structure_of(inp))
    >>> rp.update(inp)
    >>> out = rp.run("main")
    >>> round(float(out.values["x"].sum()), 6) if isinstance(out, Solved) else None
    100.0
    """

    def __init__(
        self,
        st: Structure,
        *,
        backend: Backend = Backend.HIGHSPY,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        mip_rel_gap: float = DEFAULT_MIP_REL_GAP,
    ) -> None:
        silence_highs_banner()
        self.st = st
        self.backend = Backend(backend)
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap
        self.build_count = 0
        self.relaxation_hits = 0
        self.bb_nodes_last = 0
        self._fast: dict[str, FastProblemData | None] = {}
        self.arrays: Arrays | None = None
        self.input: RoutingInput | None = None
        self._highs = new_highs()
        self._highs.setOptionValue("output_flag", False)
        self.build()

    # ------------------------------------------------------------------ build / update

    def build(self) -> None:
        """Size variables and Parameters, assemble the problems, assert DPP."""
        st = self.st
        self.v = RouterVars.create(st)
        self.cost = LinearCost(st)
        self.fees = FixedFees(st)
        self.latency = LatencyPenalty(st)
        self.tie_break = TierTieBreak(st)
        self.widths = SegmentWidths(st)
        self.capacity = Capacity(st)
        self.min_ticket = MinTicket(st)
        self.shared = SharedLimits(st)
        self.headroom = OriginHeadroom(st)
        self.api = ApiWeightBudget(st)
        self.cover = Cover(st)
        self.floors = TierFloors(st)
        self.stage = TierStageCredit(st)
        self.objective_terms: tuple[ObjectiveTerm, ...] = (
            self.cost,
            self.fees,
            self.latency,
            self.tie_break,
        )
        self.constraint_terms: tuple[ConstraintTerm, ...] = (
            self.widths,
            self.capacity,
            self.min_ticket,
            self.shared,
            self.headroom,
            self.api,
            self.cover,
            self.floors,
        )
        parts: dict[str, list[cp.Constraint]] = {
            t.name: t.build(self.v)
            for t in (
                self.widths,
                self.capacity,
                self.min_ticket,
                self.shared,
                self.headroom,
                self.api,
            )
        }
        base = [c for cons in parts.values() for c in cons]
        hard = self.cover.build(self.v)
        floors = self.floors.build(self.v)
        objective = csum([t.build(self.v) for t in self.objective_terms])
        self.problems: dict[str, cp.Problem] = {
            "main": cp.Problem(cp.Minimize(objective), base + hard + floors),
            "cover": cp.Problem(
                cp.Minimize(self.cover.penalty(self.v)), base + self.cover.build_soft(self.v)
            ),
            "stage": cp.Problem(
                cp.Maximize(self.stage.build(self.v)),
                base + hard + floors + self.stage.build_constraints(self.v),
            ),
        }
        self.y_relaxed: cp.Variable | None = None
        if self.v.y is not None:
            # The LP relaxation of ``main`` (0 ≤ y ≤ 1), built from the same terms and
            # Parameters. When its optimal y is already 0/1 it is optimal for the MILP too,
            # and HiGHS's MIP start-up (presolve, cuts, heuristics: ~10 ms at 100 sources)
            # is skipped; otherwise the MILP runs.
            self.y_relaxed = cp.Variable(self.v.y.shape, nonneg=True, name="y_relaxed")
            v_r = replace(self.v, y=self.y_relaxed)
            relaxed = dict(parts)
            relaxed["capacity"] = self.capacity.build(v_r)
            relaxed["min_ticket"] = self.min_ticket.build(v_r)
            objective_r = csum([t.build(v_r) for t in self.objective_terms])
            self.problems["main_relaxed"] = cp.Problem(
                cp.Minimize(objective_r),
                [c for cons in relaxed.values() for c in cons]
                + [self.y_relaxed <= 1]
                + hard
                + floors,
            )
        for name, prob in self.problems.items():
            if not is_dpp(prob):
                raise RoutingError(f"routing problem {name!r} is not DPP", problem=name)
        self.build_count += 1

    def update(self, inp: RoutingInput) -> Arrays:
        """Write every Parameter's value from ``inp`` (which must have this structure)."""
        st = structure_of(inp)
        if st != self.st:
            raise RoutingError(
                "input structure differs from the built problem; build a new RoutingProblem",
                calls=st.n_calls,
                sources=st.n_sources,
            )
        arrays = compile_arrays(inp, st)
        for term in (*self.objective_terms, *self.constraint_terms, self.stage):
            term.update(arrays)
        self.arrays = arrays
        self.input = inp
        return arrays

    def parameters(self) -> list[cp.Parameter]:
        seen: dict[int, cp.Parameter] = {}
        for prob in self.problems.values():
            for p in prob.parameters():
                seen[p.id] = p
        return list(seen.values())

    # ------------------------------------------------------------------ solve

    def run(self, which: str) -> Outcome:
        """Solve one of ``main``, ``cover``, ``stage`` with the configured back-end."""
        prob = self.problems[which]
        try:
            if self.backend is Backend.CVXPY:
                return self._run_cvxpy(prob)
            return self._run_highspy(which)
        except (cp.SolverError, ValueError, ArithmeticError) as exc:
            return Failed(f"{type(exc).__name__}: {exc}")

    def _variables(self) -> dict[str, cp.Variable]:
        out = {"x": self.v.x, "u": self.v.u, "s": self.v.s}
        if self.v.y is not None:
            out["y"] = self.v.y
        if self.y_relaxed is not None:
            out["y_relaxed"] = self.y_relaxed
        return out

    def run_main(self) -> Outcome:
        """Solve ``main``: its LP relaxation first when that is exact (integral y)."""
        # The highspy back-end's branch and bound starts from this same relaxation itself.
        if "main_relaxed" in self.problems and self.backend is Backend.CVXPY:
            out = self.run("main_relaxed")
            if isinstance(out, Infeasible):
                return out  # the relaxation is infeasible, so is the MILP
            if isinstance(out, Solved):
                y = out.values["y_relaxed"]
                if bool(np.all(np.minimum(np.abs(y), np.abs(1.0 - y)) <= _INTEGRAL_TOL)):
                    values = dict(out.values)
                    values["y"] = np.round(y)
                    self.relaxation_hits += 1
                    return Solved(values)
        return self.run("main")

    def _run_cvxpy(self, prob: cp.Problem) -> Outcome:
        opts: dict[str, object] = {"time_limit": self.time_limit_s}
        if prob.is_mixed_integer():
            opts["mip_rel_gap"] = self.mip_rel_gap
            opts.update(_MIP_SPEED_OPTIONS)
        solve_highs(prob, **opts)
        status = prob.status
        if status == cp.OPTIMAL:
            values: dict[str, FloatArray] = {}
            in_problem = {var.id for var in prob.variables()}
            for name, var in self._variables().items():
                if var.id in in_problem:
                    values[name] = np.asarray(var.value, dtype=np.float64).reshape(var.shape)
            return Solved(values)
        if status == cp.INFEASIBLE:
            return Infeasible()
        return Failed(f"solver status {status}")

    def _lp_arrays(self, which: str) -> LpArrays:
        """The LP of problem ``which`` for the current Parameter values (fast twin if valid)."""
        prob = self.problems[which]
        if which not in self._fast:
            try:
                self._fast[which] = FastProblemData(prob)
            except (ValueError, AttributeError, KeyError, TypeError):
                # the twin disagrees with cvxpy, or this cvxpy lays out its internals
                # differently: keep cvxpy's own get_problem_data for this problem
                self._fast[which] = None
        fast = self._fast[which]
        if fast is not None:
            return fast.lp()
        data, _, _ = prob.get_problem_data(cp.HIGHS)
        if data["int_vars_idx"]:
            raise ValueError("general integer variables are not expected in a routing problem")
        return lp_from_problem_data(data)

    def _run_highspy(self, which: str) -> Outcome:
        full_lp = fold_singleton_rows(self._lp_arrays(which))
        lpa, kept = drop_zero_columns(full_lp)
        n, m = lpa.n_cols, lpa.n_rows
        col_lower = lpa.col_lower.copy()
        col_upper = lpa.col_upper.copy()
        bool_idx = list(lpa.bool_idx)
        for i in bool_idx:
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
        h = self._highs
        h.clearModel()
        h.setOptionValue("time_limit", float(self.time_limit_s))
        h.setOptionValue("presolve", "off")  # costs more than it saves on these small LPs
        h.passModel(lp)
        if bool_idx:
            sol_or_status = self._branch_and_bound(h, bool_idx, col_lower, col_upper)
            if sol_or_status is None:
                # too many nodes or too slow for the small search: HiGHS's own MIP decides
                integrality = [highspy.HighsVarType.kContinuous] * n
                for i in bool_idx:
                    integrality[i] = highspy.HighsVarType.kInteger
                lp.integrality_ = integrality
                h.clearModel()
                h.setOptionValue("presolve", "choose")
                h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
                for name, value in _MIP_SPEED_OPTIONS.items():
                    h.setOptionValue(name, value)
                h.passModel(lp)
                h.run()
                status = h.getModelStatus()
                sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
            elif isinstance(sol_or_status, str) and sol_or_status == "time_limit":
                return Failed(f"branch and bound exceeded the time limit of {self.time_limit_s} s")
            elif isinstance(sol_or_status, str):
                status = highspy.HighsModelStatus.kInfeasible
                sol = np.zeros(n)
            else:
                status = highspy.HighsModelStatus.kOptimal
                sol = sol_or_status
        else:
            h.run()
            status = h.getModelStatus()
            sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
        if status == highspy.HighsModelStatus.kOptimal:
            full = np.zeros(full_lp.n_cols)
            full[kept] = sol
            sol = full
            values: dict[str, FloatArray] = {}
            for name, var in self._variables().items():
                if var.id in lpa.var_id_to_col:
                    start = lpa.var_id_to_col[var.id]
                    block = sol[start : start + var.size]
                    values[name] = block.reshape(var.shape, order="F")
            return Solved(values)
        if status in (
            highspy.HighsModelStatus.kInfeasible,
            highspy.HighsModelStatus.kUnboundedOrInfeasible,
        ):
            return Infeasible()
        return Failed(f"HiGHS status {h.modelStatusToString(status)}")

    def _branch_and_bound(
        self, h: Any, bins: list[int], col_lower: FloatArray, col_upper: FloatArray
    ) -> FloatArray | str | None:
        """Branch and bound over the binaries, on HiGHS's warm-started LP.

        Routing MILPs have few binaries (fixed fees, minimum tickets) and most are decided by
        the LP relaxation; re-solving the LP with one more binary fixed is a few dual-simplex
        iterations from the previous basis, far cheaper than HiGHS's MIP start-up (presolve,
        probing, cuts: ~10–40 ms at 100 sources). Exact: a node is pruned only when its LP
        bound is no better than the incumbent (Land & Doig 1960; Wolsey, *Integer
        Programming*, ch. 7). Returns the solution, ``"infeasible"``, ``"time_limit"``, or ``None`` to
        hand over to HiGHS's MIP when the search exceeds ``_BB_MAX_NODES``.
        """
        start = time.perf_counter()
        idx = np.asarray(bins, dtype=np.int32)
        lo0 = col_lower[idx].copy()
        up0 = col_upper[idx].copy()
        self.bb_nodes_last = 0

        def solve(fix: dict[int, float]) -> tuple[str, float, FloatArray]:
            if time.perf_counter() - start >= self.time_limit_s:
                return "time_limit", math.inf, np.zeros(0)
            self.bb_nodes_last += 1
            lo = lo0.copy()
            up = up0.copy()
            for k, value in fix.items():
                lo[k] = up[k] = value
            h.changeColsBounds(len(idx), idx, lo, up)
            h.run()
            status = h.getModelStatus()
            if status == highspy.HighsModelStatus.kInfeasible:
                return "infeasible", math.inf, np.zeros(0)
            if status != highspy.HighsModelStatus.kOptimal:
                return "failed", math.inf, np.zeros(0)
            sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
            return "optimal", float(h.getInfo().objective_function_value), sol

        def fractional(sol: FloatArray) -> FloatArray:
            y = sol[idx]
            frac: FloatArray = np.minimum(np.abs(y), np.abs(1.0 - y))
            return frac

        status, root_obj, root = solve({})
        if status != "optimal":
            return {"infeasible": "infeasible", "time_limit": "time_limit"}.get(status)
        frac = fractional(root)
        if frac.max() <= _INTEGRAL_TOL:
            return root
        best_obj = math.inf
        best: FloatArray | None = None
        # Rounding heuristics for an early incumbent: every fractional binary to 0 (drop the
        # half-used fee sources), then to 1; the others keep their integral root values.
        y_root = root[idx]
        for value in (0.0, 1.0):
            fix = {
                k: (value if frac[k] > _INTEGRAL_TOL else float(round(y_root[k])))
                for k in range(len(idx))
            }
            status, obj, sol = solve(fix)
            if status in ("failed", "time_limit"):
                return None if status == "failed" else status
            if status == "optimal" and obj < best_obj:
                best_obj, best = obj, sol

        def prunable(bound: float) -> bool:
            return bound >= best_obj - _BB_PRUNE_REL * max(1.0, abs(best_obj))

        # Open nodes (parent bound, order, fixings): depth first until an incumbent exists,
        # best bound first after (fewest nodes to prove optimality).
        counter = 0
        open_nodes: list[tuple[float, int, dict[int, float]]] = []

        def branch(parent_obj: float, fix: dict[int, float], sol: FloatArray) -> None:
            nonlocal counter
            y = sol[idx]
            f = fractional(sol)
            k = int(np.argmax(f))
            nearer = 1.0 if y[k] >= 0.5 else 0.0
            for value in (1.0 - nearer, nearer):  # the nearer rounding is popped first
                counter += 1
                node = (parent_obj, counter, {**fix, k: value})
                if best is None:
                    open_nodes.append(node)
                else:
                    heapq.heappush(open_nodes, node)

        branch(root_obj, {}, root)
        heap_mode = best is not None
        if heap_mode:
            heapq.heapify(open_nodes)
        while open_nodes:
            if time.perf_counter() - start > self.time_limit_s:
                return "time_limit"
            if self.bb_nodes_last >= _BB_MAX_NODES:
                return None
            if not heap_mode and best is not None:
                heapq.heapify(open_nodes)
                heap_mode = True
            bound, _, fix = heapq.heappop(open_nodes) if heap_mode else open_nodes.pop()
            if prunable(bound):
                continue  # the parent's LP bound already cannot beat the incumbent
            status, obj, sol = solve(fix)
            if status in ("failed", "time_limit"):
                return None if status == "failed" else status
            if status == "infeasible" or prunable(obj):
                continue
            if fractional(sol).max() <= _INTEGRAL_TOL:
                best_obj, best = obj, sol
                continue
            branch(obj, fix, sol)
        return best if best is not None else "infeasible"
