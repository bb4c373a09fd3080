"""Portfolio margin for every pool: valuation, collateral, the three models, reports (DESIGN §3).

Public entry points (re-exported here, logic lives in the submodules):

- ``evaluate_pool(desk, pool_id, portfolio)`` and ``evaluate_portfolio(portfolio, pool, params)``
  → ``MarginReport`` (``core.margin.api``);
- ``margin_calls_due(desk, reports)``: the pools at or below their own ``call`` level, the one
  breach rule (``core.margin.levels``);
- ``build_risk_book`` + ``scenario_pnl`` with a ``ScenarioMatrix``: the vectorised core that
  stress tests call with their own joint scenarios (``core.margin.riskbook``, ``engine``).

Arrows point one way: ``core.margin`` reads ``core.config`` (``portfolio_file``, the ``pmr margin
--portfolio`` reader, and ``api`` for the desk type), never the reverse; the parameter types both
need live below them in :mod:`core.params`.

Names load lazily (PEP 562): loading the numeric engine (numpy, scipy) just to read a report
type made every ``pmr`` command that touches one slow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.lazy import lazy_getattr

if TYPE_CHECKING:
    from core.margin.api import evaluate_book, evaluate_pool, evaluate_portfolio, params_for_pool
    from core.margin.book import PoolBook, build_book
    from core.margin.engine import EngineResult, RiskBook, scenario_pnl, worst_losses
    from core.margin.levels import MarginCallDue, margin_calls_due
    from core.margin.params import MarginParams
    from core.margin.report import (
        DeskLevel,
        MarginReport,
        PositionContribution,
        SiloReport,
        UnitRisk,
        VenueBand,
    )
    from core.margin.riskbook import RowLabels, build_risk_book
    from core.margin.scenarios import (
        ScenarioMatrix,
        crash_matrix,
        joint_matrix,
        stack_grids,
        unit_grid,
    )

_LAZY: dict[str, str] = {
    "DeskLevel": "core.margin.levels",
    "EngineResult": "core.margin.engine",
    "MarginCallDue": "core.margin.levels",
    "MarginParams": "core.margin.params",
    "MarginReport": "core.margin.report",
    "PoolBook": "core.margin.book",
    "PositionContribution": "core.margin.report",
    "RiskBook": "core.margin.engine",
    "RowLabels": "core.margin.riskbook",
    "ScenarioMatrix": "core.margin.scenarios",
    "SiloReport": "core.margin.report",
    "UnitRisk": "core.margin.report",
    "VenueBand": "core.margin.levels",
    "build_book": "core.margin.book",
    "build_risk_book": "core.margin.riskbook",
    "crash_matrix": "core.margin.scenarios",
    "evaluate_book": "core.margin.api",
    "evaluate_pool": "core.margin.api",
    "evaluate_portfolio": "core.margin.api",
    "joint_matrix": "core.margin.scenarios",
    "margin_calls_due": "core.margin.levels",
    "params_for_pool": "core.margin.api",
    "scenario_pnl": "core.margin.engine",
    "stack_grids": "core.margin.scenarios",
    "unit_grid": "core.margin.scenarios",
    "worst_losses": "core.margin.engine",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "DeskLevel",
    "EngineResult",
    "MarginCallDue",
    "MarginParams",
    "MarginReport",
    "PoolBook",
    "PositionContribution",
    "RiskBook",
    "RowLabels",
    "ScenarioMatrix",
    "SiloReport",
    "UnitRisk",
    "VenueBand",
    "build_book",
    "build_risk_book",
    "crash_matrix",
    "evaluate_book",
    "evaluate_pool",
    "evaluate_portfolio",
    "joint_matrix",
    "margin_calls_due",
    "params_for_pool",
    "scenario_pnl",
    "stack_grids",
    "unit_grid",
    "worst_losses",
]
