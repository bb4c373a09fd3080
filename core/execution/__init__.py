"""Execution (DESIGN §7): what happens to a margin call after routing, and its audit events.

``core.execution.events``: the typed audit events (``MarginCallRaised`` ... ``CallEscalated``)
and their one serialisation into the hash-chained audit trail; ``core.execution.story``: a
call's story read back from that trail.
"""
