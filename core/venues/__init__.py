"""Venues: the ``Venue`` protocol, the ccxt adapter, and the simulated exchange under it.

Public entry points: :class:`~core.venues.ccxt_venue.CcxtVenue`,
:func:`~core.venues.factory.build_desk_venues`, the ``Venue`` protocol and report types in
:mod:`core.venues.base` (defined in :mod:`core.venues.reports`), the lookup protocol
:class:`~core.venues.lookup.TransferClaims` (answered by ``core.ledger.claims``),
:func:`~core.venues.errors.is_retryable`, and :func:`~core.venues.state.read_desk_state` (the
desk's state as the venues report it: a ``Portfolio`` per venue and per pool).
"""
