"""The router's optimisation problem (DESIGN §5.2): built once, updated by value, re-solved.

``RoutingProblem`` owns three ``cp.Problem``s over the same variables and Parameters:

* ``main``   minimise cost + λ·latency + ε·tier subject to cover (shortfall ≤ ū), tier floors
  and every capacity constraint;
* ``cover``  minimise the total shortfall Σ u (only needed when the deficit cannot be covered);
* ``stage``  maximise capped tier credit (the strict policy's lexicographic stages).

All three are DPP (asserted at build), so a re-solve with new numbers reuses cvxpy's cached
parameter-to-matrix map instead of canonicalising again. Two back-ends solve them:

* ``Backend.CVXPY``   ``problem.solve(solver=cp.HIGHS)``: the model of record;
* ``Backend.HIGHSPY`` the hot path: ``get_problem_data`` (the same cached, Parameter-updated
  matrices) handed straight to one reused ``highspy.Highs``. cvxpy's HiGHS interface builds a
  new solver object and re-wraps results on every call, which costs more than the LP itself at
  100 sources; ``tests/routing/test_oracles.py`` holds both back-ends equal.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum

import cvxpy as cp
import highspy
import numpy as np
import numpy.typing as npt

from core.errors import RoutingError
from core.routing.arrays import Arrays, Structure, compile_arrays, structure_of
from core.routing.cvx import csum, is_dpp, new_highs, solve_highs
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


class Backend(StrEnum):
    CVXPY = "cvxpy"
    HIGHSPY = "highspy"


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
        self.arrays: Arrays | None = None
        self.input: RoutingInput | None = None
        self._highs = new_highs()
        self._highs.setOptionValue("output_flag", False)
        self.build()

    # ------------------------------------------------------------------ build / update

    def build(self) -> None:
        """Size variables and Parameters, assemble the three problems, assert DPP."""
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
        base: list[cp.Constraint] = []
        for term in (self.widths, self.capacity, self.min_ticket, self.shared):
            base += term.build(self.v)
        base += self.headroom.build(self.v) + self.api.build(self.v)
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
            return self._run_highspy(prob)
        except (cp.SolverError, ValueError, ArithmeticError) as exc:
            return Failed(f"{type(exc).__name__}: {exc}")

    def _variables(self) -> dict[str, cp.Variable]:
        out = {"x": self.v.x, "u": self.v.u, "s": self.v.s}
        if self.v.y is not None:
            out["y"] = self.v.y
        return out

    def _run_cvxpy(self, prob: cp.Problem) -> Outcome:
        opts: dict[str, object] = {"time_limit": self.time_limit_s}
        if prob.is_mixed_integer():
            opts["mip_rel_gap"] = self.mip_rel_gap
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

    def _run_highspy(self, prob: cp.Problem) -> Outcome:
        data, _, _ = prob.get_problem_data(cp.HIGHS)
        inf = highspy.kHighsInf
        c = np.asarray(data["c"], dtype=np.float64)
        A = data["A"].tocsc()
        b = np.asarray(data["b"], dtype=np.float64)
        n, m = A.shape[1], A.shape[0]
        n_eq = int(data["dims"].zero)
        row_lower = np.concatenate([b[:n_eq], np.full(m - n_eq, -inf)])
        lb = data["lower_bounds"]
        ub = data["upper_bounds"]
        col_lower = np.full(n, -inf) if lb is None else np.asarray(lb, dtype=np.float64).copy()
        col_upper = np.full(n, inf) if ub is None else np.asarray(ub, dtype=np.float64).copy()
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = m
        lp.col_cost_ = c
        lp.row_lower_ = row_lower
        lp.row_upper_ = b
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr
        lp.a_matrix_.index_ = A.indices
        lp.a_matrix_.value_ = A.data
        lp.a_matrix_.num_col_ = n
        lp.a_matrix_.num_row_ = m
        bool_idx = [int(i) for i in data["bool_vars_idx"]]
        is_mip = bool(bool_idx or data["int_vars_idx"])
        if is_mip:
            integrality = [highspy.HighsVarType.kContinuous] * n
            for i in bool_idx:
                integrality[i] = highspy.HighsVarType.kInteger
                col_lower[i] = max(col_lower[i], 0.0)
                col_upper[i] = min(col_upper[i], 1.0)
            for i in data["int_vars_idx"]:
                integrality[int(i)] = highspy.HighsVarType.kInteger
            lp.integrality_ = integrality
        lp.col_lower_ = col_lower
        lp.col_upper_ = col_upper
        h = self._highs
        h.clearModel()
        h.setOptionValue("time_limit", float(self.time_limit_s))
        # Presolve costs more than it saves on these small LPs; MILPs keep it for the cuts.
        h.setOptionValue("presolve", "choose" if is_mip else "off")
        h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
            cols = data["param_prob"].var_id_to_col
            values: dict[str, FloatArray] = {}
            for name, var in self._variables().items():
                if var.id in cols:
                    start = cols[var.id]
                    block = sol[start : start + var.size]
                    values[name] = block.reshape(var.shape, order="F")
            return Solved(values)
        if status in (
            highspy.HighsModelStatus.kInfeasible,
            highspy.HighsModelStatus.kUnboundedOrInfeasible,
        ):
            return Infeasible()
        return Failed(f"HiGHS status {h.modelStatusToString(status)}")


def timed_ms(start_s: float) -> float:
    return (time.perf_counter() - start_s) * 1e3
