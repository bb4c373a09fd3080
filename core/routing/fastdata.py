"""Parameter → LP matrices without cvxpy's per-call sparse-matrix plumbing (the hot path).

After DPP canonicalisation cvxpy holds, per problem, a constant tensor that maps the flattened
Parameter vector to the values of the conic constraint matrix A (``reduced_A``, with a fixed
sparsity pattern) and to the objective vector (``q``). ``get_problem_data`` re-applies it on
every call but also rebuilds and slices scipy matrices (~3 ms at 100 sources, more than
HiGHS needs to solve the LP). ``FastProblemData`` keeps the fixed CSC pattern and applies the
same tensors with two sparse mat-vecs, giving HiGHS its arrays directly.

It is a twin of cvxpy's own path, not a second model: at construction it computes both for the
current Parameter values and refuses to exist (the caller then keeps using
``get_problem_data``) unless they agree exactly in pattern and to 1e-12 in value; a test holds
them equal on random inputs (STYLE rule 18).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.routing.cvx import cp

# cvxpy's id of the constant column in a parametrised problem's tensor
lo = cp.lin_ops.lin_op

__all__ = [
    "FastProblemData",
    "LpArrays",
    "drop_zero_columns",
    "fold_singleton_rows",
    "lp_from_problem_data",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class LpArrays:
    """min cᵀx s.t. row_lower ≤ A x ≤ row_upper, col_lower ≤ x ≤ col_upper (CSC arrays)."""

    c: FloatArray
    a_start: IntArray
    a_index: IntArray
    a_value: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    bool_idx: tuple[int, ...]
    var_id_to_col: dict[int, int]

    @property
    def n_cols(self) -> int:
        return len(self.c)

    @property
    def n_rows(self) -> int:
        return len(self.row_upper)


def lp_from_problem_data(data: dict[str, Any]) -> LpArrays:
    """``get_problem_data(cp.HIGHS)`` output as ``LpArrays`` (A x + s = b, s in cones)."""
    inf = np.inf
    A = data["A"].tocsc()
    b = np.asarray(data["b"], dtype=np.float64)
    n, m = A.shape[1], A.shape[0]
    n_eq = int(data["dims"].zero)
    lb, ub = data["lower_bounds"], data["upper_bounds"]
    return LpArrays(
        c=np.asarray(data["c"], dtype=np.float64),
        a_start=np.asarray(A.indptr, dtype=np.int32),
        a_index=np.asarray(A.indices, dtype=np.int32),
        a_value=np.asarray(A.data, dtype=np.float64),
        row_lower=np.concatenate([b[:n_eq], np.full(m - n_eq, -inf)]),
        row_upper=b,
        col_lower=np.full(n, -inf) if lb is None else np.asarray(lb, dtype=np.float64).copy(),
        col_upper=np.full(n, inf) if ub is None else np.asarray(ub, dtype=np.float64).copy(),
        bool_idx=tuple(int(i) for i in data["bool_vars_idx"]),
        var_id_to_col=dict(data["param_prob"].var_id_to_col),
    )


class FastProblemData:
    """Re-apply a DPP problem's Parameters to its LP arrays in two sparse mat-vecs."""

    def __init__(self, problem: cp.Problem) -> None:
        data, _, _ = problem.get_problem_data(cp.HIGHS)
        if data["int_vars_idx"] or int(data["dims"].zero) != 0:
            raise ValueError("fast path covers inequality-only LPs with binaries")
        pp = data["param_prob"]
        pp.reduced_A.cache(False)
        if pp.reduced_A.problem_data_index is None:
            raise ValueError("problem has no parametrised constraint matrix")
        indices, indptr, shape = pp.reduced_A.problem_data_index
        self._pp = pp
        self._n = int(shape[1]) - 1
        self._m = int(shape[0])
        split = int(indptr[-2])  # the last column of the tensor's image is the offset b
        self._split = split
        self._a_start = np.asarray(indptr[:-1], dtype=np.int32)
        self._a_index = np.asarray(indices[:split], dtype=np.int32)
        self._b_rows = np.asarray(indices[split:], dtype=np.int64)
        self._params = [
            (pp.id_to_param[pid], int(col), int(pp.param_id_to_size[pid]))
            for pid, col in pp.param_id_to_col.items()
            if pid != lo.CONSTANT_ID
        ]
        self._const_col = int(pp.param_id_to_col[lo.CONSTANT_ID])
        self._size = int(pp.total_param_size)
        self._template = lp_from_problem_data(data)
        for tensor in (pp.lb_tensor, pp.ub_tensor):
            if tensor is not None:
                cols = np.unique(tensor.tocoo().col)
                if np.any(cols != self._const_col):
                    raise ValueError("variable bounds depend on Parameters")
        fast = self.lp()
        ref = self._template
        same = (
            np.array_equal(fast.a_start, ref.a_start)
            and np.array_equal(fast.a_index, ref.a_index)
            and np.allclose(fast.a_value, ref.a_value, rtol=1e-12, atol=1e-12)
            and np.allclose(fast.row_upper, ref.row_upper, rtol=1e-12, atol=1e-12)
            and np.allclose(fast.c, ref.c, rtol=1e-12, atol=1e-12)
        )
        if not same:
            raise ValueError("fast parameter application disagrees with cvxpy's")

    def _param_vec(self) -> FloatArray:
        vec = np.zeros(self._size + 1)
        for param, col, size in self._params:
            vec[col : col + size] = np.asarray(param.value, dtype=np.float64).ravel(order="F")
        vec[self._const_col] = 1.0
        return vec

    def lp(self) -> LpArrays:
        """The LP arrays for the Parameters' current values."""
        vec = self._param_vec()
        flat = np.asarray(self._pp.reduced_A.reduced_mat @ vec, dtype=np.float64).ravel()
        b = np.zeros(self._m)
        np.add.at(b, self._b_rows, flat[self._split :])
        q = np.asarray(self._pp.q @ vec, dtype=np.float64).ravel()
        t = self._template
        return LpArrays(
            c=q[: self._n],
            a_start=self._a_start,
            a_index=self._a_index,
            a_value=-flat[: self._split],  # conic form A x + s = b stores −A (ConicSolver)
            row_lower=np.full(self._m, -np.inf),
            row_upper=b,
            col_lower=t.col_lower,
            col_upper=t.col_upper,
            bool_idx=t.bool_idx,
            var_id_to_col=t.var_id_to_col,
        )


def fold_singleton_rows(lp: LpArrays) -> LpArrays:
    """Turn one-variable rows (a·x_j ≤ b) into column bounds and drop them.

    Segment widths (x ≤ u), single-segment capacities and y ≤ 1 are written by cvxpy as rows
    because their right-hand sides are Parameters; at 10 calls × 100 sources they are half the
    rows. Folding them into bounds is exact (the feasible set is unchanged) and is what a
    presolve would do first, without running a presolve on every re-solve.
    """
    n, m = lp.n_cols, lp.n_rows
    if m == 0:
        return lp
    col_of = np.repeat(np.arange(n), np.diff(lp.a_start))
    row_nnz = np.bincount(lp.a_index, minlength=m)
    nonzero = lp.a_value != 0.0
    single_row = (row_nnz == 1) & np.isinf(lp.row_lower)
    entry_single = single_row[lp.a_index]
    # a zero coefficient with a negative right-hand side is an infeasible row: keep it
    entry_single &= nonzero | (lp.row_upper[lp.a_index] >= 0)
    single_row = np.zeros(m, dtype=bool)
    single_row[lp.a_index[entry_single]] = True
    if not single_row.any():
        return lp
    col_lower = lp.col_lower.copy()
    col_upper = lp.col_upper.copy()
    bounded = entry_single & nonzero
    rows = lp.a_index[bounded]
    coef = lp.a_value[bounded]
    bound = lp.row_upper[rows] / coef
    cols = col_of[bounded]
    pos = coef > 0
    np.minimum.at(col_upper, cols[pos], bound[pos])
    np.maximum.at(col_lower, cols[~pos], bound[~pos])
    keep = ~single_row[lp.a_index]
    new_row = np.cumsum(~single_row) - 1
    kept_cols = col_of[keep]
    start = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(kept_cols, minlength=n), out=start[1:])
    return LpArrays(
        c=lp.c,
        a_start=start,
        a_index=new_row[lp.a_index[keep]].astype(np.int32),
        a_value=lp.a_value[keep],
        row_lower=lp.row_lower[~single_row],
        row_upper=lp.row_upper[~single_row],
        col_lower=col_lower,
        col_upper=col_upper,
        bool_idx=lp.bool_idx,
        var_id_to_col=lp.var_id_to_col,
    )


def drop_zero_columns(lp: LpArrays) -> tuple[LpArrays, npt.NDArray[np.int64]]:
    """Remove continuous columns fixed at 0 (a source that cannot serve a call).

    In a joint problem most (call, piece) pairs are ineligible: after ``fold_singleton_rows``
    their bounds are [0, 0]. Dropping them is exact (they contribute nothing to any row or to
    the objective) and shrinks a 10-call LP by about half. Returns the reduced LP and the
    kept original column indices (to expand the solution back); binaries are always kept and
    re-indexed.
    """
    n = lp.n_cols
    is_bool = np.zeros(n, dtype=bool)
    if lp.bool_idx:
        is_bool[list(lp.bool_idx)] = True
    zero = (lp.col_lower == 0.0) & (lp.col_upper == 0.0) & ~is_bool
    if not zero.any() or zero.all():
        # nothing to drop, or everything: HiGHS answers "empty model" for zero columns, so
        # the fixed columns stay and it decides feasibility of the rows itself
        return lp, np.arange(n)
    keep = np.flatnonzero(~zero)
    lengths = np.diff(lp.a_start)
    col_of = np.repeat(np.arange(n), lengths)
    entry_keep = ~zero[col_of]
    start = np.zeros(len(keep) + 1, dtype=np.int32)
    np.cumsum(lengths[keep], out=start[1:])
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    reduced = LpArrays(
        c=lp.c[keep],
        a_start=start,
        a_index=lp.a_index[entry_keep],
        a_value=lp.a_value[entry_keep],
        row_lower=lp.row_lower,
        row_upper=lp.row_upper,
        col_lower=lp.col_lower[keep],
        col_upper=lp.col_upper[keep],
        bool_idx=tuple(int(new_index[i]) for i in lp.bool_idx),
        var_id_to_col=lp.var_id_to_col,
    )
    return reduced, keep
