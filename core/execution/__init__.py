"""Execution (DESIGN §7): from a margin call's state to recorded plans and transfer legs.

The layer above routing: ``flows → core.execution → core.routing → core.margin → core.domain``,
with the venues and the ledger at the side. What lives here so far:

* ``core.execution.planning``: the one state → margin reports → routing input pipeline that
  the CLI, the demo and the margin-call flow all call;
* ``core.execution.states``: the one mapping from a venue's transfer status to the ledger's
  transfer state.

The executor itself (intent row → rate-limit token → send → record) builds on these.
"""
