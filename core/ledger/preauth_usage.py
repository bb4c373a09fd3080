"""What the pre-authorised routes have used in a window: the store half of the allow-list gate.

``core.execution.preauth.authorise`` checks a leg against rolling 24 h caps per route, per
source venue, per shared group and per cold route's daily quota. Every one of those is a sum over
``TransferRow`` of the legs recorded in the window that may have moved collateral
(``TransferState.may_have_moved``: pending, sent, unknown and confirmed; failed and refused legs
moved nothing), valued at their planned ``amount_usd``. One query reads them all, so the caps are
checked against one consistent picture of the store:

* per route (or swap): keyed by ``route_id``;
* per venue: the legs that *move* an asset out of a wallet on that source venue (``to_asset``
  empty: a conversion stays in its wallet and is not counted), keyed by ``venue_id``;
* per group and per cold route: sums over route ids, the membership coming from the desk
  (:meth:`PreauthUsage.routes_usd`).

The window is ``created_at >= since`` with no upper bound: an intent stamped a little in the
future (clock skew between executors) counts rather than escapes. A leg recorded exactly 24 h
before ``now`` still counts; one second older does not. Legs without a ``route_id`` (manual
movements) are not pre-authorised movements and are not counted.

``exclude_key`` leaves one leg out: the leg being checked, whose own intent row may already be
in the store (the executor writes the intent, commits, then authorises), so it never counts
against itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from sqlmodel import Session, col, select

from core.errors import DataError
from core.ledger.tables import TransferRow
from core.ledger.vocab import TransferState

__all__ = ["PreauthUsage", "preauth_usage"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PreauthUsage:
    """USD used since ``since`` per route and per source venue (legs that may have moved)."""

    since: datetime
    by_route: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    by_venue: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))

    def route_usd(self, route_id: str) -> Decimal:
        """USD used on route or swap ``route_id``."""
        return self.by_route.get(route_id, _ZERO)

    def venue_usd(self, venue: str) -> Decimal:
        """USD moved out of wallets on ``venue`` by its routes (swaps excluded)."""
        return self.by_venue.get(venue, _ZERO)

    def routes_usd(self, route_ids: Iterable[str]) -> Decimal:
        """USD used on all of ``route_ids`` together (a shared group, the cold routes)."""
        return sum((self.route_usd(r) for r in set(route_ids)), _ZERO)

    def for_router(self, groups: Mapping[str, Iterable[str]]) -> dict[str, Decimal]:
        """The usage in the router's terms (``used_24h_usd`` of ``core.routing.from_state``):
        per route or swap id, per group name (``groups``: name → its routes), and per source
        venue as ``venue:<name>``."""
        out = dict(self.by_route)
        for name, routes in groups.items():
            out[name] = self.routes_usd(routes)
        for venue, usd in self.by_venue.items():
            out[f"venue:{venue}"] = usd
        return out


def preauth_usage(
    session: Session, *, since: datetime, exclude_key: str | None = None
) -> PreauthUsage:
    """Sum the pre-authorised usage recorded since ``since``, leaving out leg ``exclude_key``.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from core.ledger.store import init_db, make_engine
    >>> engine = make_engine("sqlite://"); _ = init_db(engine)
    >>> with Session(engine) as s:
    ...     preauth_usage(s, since=datetime(2026, 1, 1, tzinfo=UTC)).route_usd("a.spot-pm.usdt")
    Decimal('0')
    """
    if since.tzinfo is None or since.utcoffset() is None:
        raise DataError("the window start must carry a timezone", since=since.isoformat())
    counted = [s.value for s in TransferState if s.may_have_moved]
    stmt = select(
        col(TransferRow.route_id),
        col(TransferRow.venue_id),
        col(TransferRow.to_asset),
        col(TransferRow.amount_usd),
    ).where(
        col(TransferRow.route_id).is_not(None),
        col(TransferRow.amount_usd).is_not(None),
        col(TransferRow.status).in_(counted),
        col(TransferRow.created_at) >= since,
    )
    if exclude_key is not None:
        stmt = stmt.where(col(TransferRow.idempotency_key) != exclude_key)
    by_route: dict[str, Decimal] = {}
    by_venue: dict[str, Decimal] = {}
    for route, venue, to_asset, usd in session.exec(stmt).all():
        if route is None or usd is None:
            continue
        by_route[route] = by_route.get(route, _ZERO) + usd
        if to_asset is None:
            by_venue[venue] = by_venue.get(venue, _ZERO) + usd
    return PreauthUsage(since, MappingProxyType(by_route), MappingProxyType(by_venue))
