"""Venues: the ``Venue`` protocol, the ccxt adapter, and the simulated exchange under it.

Public entry points: :class:`~core.venues.ccxt_venue.CcxtVenue`,
:func:`~core.venues.factory.build_desk_venues`, the report types in :mod:`core.venues.base`,
and :func:`~core.venues.errors.is_retryable`.
"""
