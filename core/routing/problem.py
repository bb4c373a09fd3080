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
  ``highspy.Highs`` (``highs_solve.HighsSolver``: per-solve time limit, binaries by a small
  warm-started branch and bound); ``tests/routing/test_routing_oracles.py`` holds both
  back-ends equal (and each equal to a from-scratch plain cvxpy model).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from core.errors import RoutingError
from core.routing.arrays import Arrays, Structure, compile_arrays, structure_of
from core.routing.backends import Backend
from core.routing.cvx import cp, csum, is_dpp, new_highs, solve_highs
from core.routing.fastdata import (
    FastProblemData,
    LpArrays,
    drop_zero_columns,
    fold_singleton_rows,
    lp_from_problem_data,
)
from core.routing.highs_solve import INTEGRAL_TOL, MIP_SPEED_OPTIONS, HighsSolver
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
    >>> arrays = rp.update(inp)
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
        self._fast: dict[str, FastProblemData | None] = {}
        self.arrays: Arrays | None = None
        self.input: RoutingInput | None = None
        self.solver = HighsSolver(time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap)
        self.build()

    @property
    def bb_nodes_last(self) -> int:
        """Branch-and-bound nodes of the last highspy solve (1: the root LP was integral)."""
        return self.solver.bb_nodes_last

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
                if bool(np.all(np.minimum(np.abs(y), np.abs(1.0 - y)) <= INTEGRAL_TOL)):
                    values = dict(out.values)
                    values["y"] = np.round(y)
                    self.relaxation_hits += 1
                    return Solved(values)
        return self.run("main")

    def _run_cvxpy(self, prob: cp.Problem) -> Outcome:
        opts: dict[str, object] = {"time_limit": self.time_limit_s}
        if prob.is_mixed_integer():
            opts["mip_rel_gap"] = self.mip_rel_gap
            opts.update(MIP_SPEED_OPTIONS)
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
        res = self.solver.solve(lpa)
        if res.status == "infeasible":
            return Infeasible()
        if res.x is None:
            return Failed(res.reason)
        sol = np.zeros(full_lp.n_cols)
        sol[kept] = res.x
        values: dict[str, FloatArray] = {}
        for name, var in self._variables().items():
            if var.id in lpa.var_id_to_col:
                start = lpa.var_id_to_col[var.id]
                values[name] = sol[start : start + var.size].reshape(var.shape, order="F")
        return Solved(values)
