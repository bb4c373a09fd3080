"""Execution (DESIGN §7): from a margin call's state to recorded plans, transfer legs and their
audit events.

The layer above routing: ``flows → core.execution → core.routing → core.margin → core.domain``,
with the venues and the ledger at the side. What lives here so far:

* ``core.execution.planning``: the one state → margin reports → routing input pipeline that
  the CLI, the demo and the margin-call flow all call;
* ``core.execution.states``: the one mapping from a venue's transfer status to the ledger's
  transfer state;
* ``core.execution.events``: the typed audit events (``MarginCallRaised`` ... ``CallEscalated``)
  and their one serialisation into the hash-chained audit trail;
* ``core.execution.story``: a call's story read back from that trail;
* ``core.execution.prefund``: a pre-funding recommendation recorded as a call of kind
  ``prefund`` and its outcome read back (``pmr prefund --apply``).

The executor itself (intent row → rate-limit token → send → record) builds on these.
"""
