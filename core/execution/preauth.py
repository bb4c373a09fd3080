"""The pre-authorisation gate: every leg is checked against the desk's allow-list before
anything is written to a venue (DESIGN §7, issue 14 point 1).

A leg the gate refuses is never sent: the executor records it ``refused`` with the
:class:`Refusal`'s ``reason`` (``core.ledger.transfers.record_refused_leg``, or the move
``pending`` → ``refused`` when its intent row exists) and re-plans the remaining deficit without
it. Gates deny, they don't throw (STYLE rule 14): :func:`authorise` returns ``None`` (allowed)
or a ``Refusal``; it raises only for a malformed leg (bad input, not a policy decision).

Checks, in order; the first that fails is the refusal:

==========================  ==================================================================
reason                      the leg is refused when
==========================  ==================================================================
``route_missing``           it names no route or swap, or one the desk no longer declares
``asset_or_wallet_mismatch``  its kind, venue, wallets, asset (or the swap's assets) or
                            destination venue differ from the route or swap it names
``not_allow_listed``        the route or swap has no ``[[preauth]]`` entry
``per_transfer_cap``        its USD value is over the entry's ``per_transfer_usd``
``route_24h_cap``           with what the route used in the last 24 h it is over
                            ``rolling_24h_usd``
``venue_24h_cap``           with what every route leaving the same venue used in the last 24 h
                            it is over ``[preauth_venues]``'s cap for that venue (routes only:
                            a swap stays in its wallet)
``group_24h_cap``           with what the routes of its ``group`` used in the last 24 h it is
                            over ``[preauth_groups]``'s cap
``cold_quota``              on a cold route, with what the route used in the last 24 h it is
                            over ``cold_quota_usd_per_day``
``address_not_allowed``     on an onchain route, the route's ``withdraw_address`` is not an
                            allow-listed address for that asset and receiving venue
==========================  ==================================================================

Usage is read from the store (``core.ledger.preauth_usage``): legs recorded in the window that
may have moved collateral, at their planned USD value; failed and refused legs do not count.
The window is rolling: ``[now - 24 h, ...)``, the cold quota's included, because a calendar day
would let a route send its whole quota at 23:59 UTC and again at 00:01 (twice the quota in two
minutes), and because Binance's own withdrawal limit is a rolling 24 h one. A cap is reached,
not exceeded, when used + leg equals it: that leg is allowed.

Concurrency: two executors authorising at once cannot both squeeze under a cap if each writes
and commits its leg's ``pending`` intent row *before* calling :func:`authorise` with
``exclude_key`` = that leg's key. Each then sees the other's row (or the other sees its own):
at worst both are refused, never both allowed over the cap.

Examples
--------
>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> from sqlmodel import Session
>>> from core.config import load_desk
>>> from core.domain import WalletKind as W
>>> from core.ledger.store import init_db, make_engine
>>> from core.routing.legs import Leg, LegKind
>>> desk = load_desk("examples/desk.toml")
>>> engine = make_engine("sqlite://"); _ = init_db(engine)
>>> leg = Leg(0, LegKind.INTERNAL, "sim-a", W.SPOT, W.MARGIN, "USDT", Decimal(1_200_000),
...           Decimal(1_200_000), Decimal(1), 1.0, route_id="a.spot-margin.usdt")
>>> with Session(engine) as s:
...     authorise(s, desk, leg, now=datetime(2026, 11, 27, tzinfo=UTC))
Refusal(reason='per_transfer_cap', detail='leg 1,200,000.00 USD over per-transfer cap 1,000,000.00 USD on route a.spot-margin.usdt')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlmodel import Session

from core.config import DeskConfig, PreauthCfg, RouteCfg, SwapCfg
from core.errors import DataError
from core.ledger.preauth_usage import PreauthUsage, preauth_usage
from core.routing.legs import Leg, LegKind

__all__ = ["REFUSAL_REASONS", "WINDOW", "Refusal", "authorise"]

#: The rolling window of every cap and of the cold quota.
WINDOW = timedelta(hours=24)

#: Every machine code a :class:`Refusal` may carry, in the order the checks run.
REFUSAL_REASONS = (
    "route_missing",
    "asset_or_wallet_mismatch",
    "not_allow_listed",
    "per_transfer_cap",
    "route_24h_cap",
    "venue_24h_cap",
    "group_24h_cap",
    "cold_quota",
    "address_not_allowed",
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the gate denied a leg: a machine code and a sentence with the figures.

    ``reason`` is one of :data:`REFUSAL_REASONS` (what the store's ``error_message`` and the
    audit event carry as the cause); ``detail`` is for the operator, e.g. ``leg 250,000.00 USD
    over per-transfer cap 100,000.00 USD on route binance-spot-um-usdt``.
    """

    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REFUSAL_REASONS:
            raise DataError("unknown refusal reason", reason=self.reason)


def _usd(value: Decimal) -> str:
    return f"{value:,.2f} USD"


def _over(leg_usd: Decimal, used: Decimal, cap: Decimal, what: str) -> str | None:
    """The sentence when ``leg_usd`` on top of ``used`` passes ``cap``; None when it fits."""
    total = used + leg_usd
    if total <= cap:
        return None
    return (
        f"leg {_usd(leg_usd)} with {_usd(used)} used in the last 24 h makes {_usd(total)}, "
        f"over the rolling 24 h cap {_usd(cap)} {what}"
    )


def _expected(item: RouteCfg | SwapCfg) -> dict[str, str | None]:
    """What a leg on ``item`` must look like, field by field."""
    if isinstance(item, RouteCfg):
        return {
            "kind": LegKind.of_route(item.kind).value,
            "venue": item.venue,
            "from_wallet": item.from_wallet.value,
            "to_wallet": item.to_wallet.value,
            "asset": item.asset,
            "to_venue": item.destination_venue,
            "to_asset": None,
        }
    return {
        "kind": item.method.value,
        "venue": item.venue,
        "from_wallet": item.wallet.value,
        "to_wallet": item.wallet.value,
        "asset": item.from_asset,
        "to_venue": item.venue,
        "to_asset": item.to_asset,
    }


def _mismatch(leg: Leg, item: RouteCfg | SwapCfg) -> list[str]:
    """Each field where ``leg`` differs from its route or swap, as ``field got (route: want)``."""
    got = {
        "kind": leg.kind.value,
        "venue": leg.venue,
        "from_wallet": leg.from_wallet.value,
        "to_wallet": leg.to_wallet.value,
        "asset": leg.asset,
        "to_venue": leg.destination_venue,
        "to_asset": leg.to_asset,
    }
    what = "route" if isinstance(item, RouteCfg) else "swap"
    return [
        f"{k} {got[k]} ({what}: {want})" for k, want in _expected(item).items() if got[k] != want
    ]


def _check_leg(leg: Leg, now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise DataError("the pre-authorisation instant must carry a timezone", now=str(now))
    usd = leg.amount_usd
    if not isinstance(usd, Decimal) or not usd.is_finite() or usd <= 0:
        raise DataError(
            "a leg's amount_usd must be a positive Decimal",
            route=leg.route_id,
            leg_no=leg.leg_no,
            value=usd,
        )


def authorise(
    session: Session,
    desk: DeskConfig,
    leg: Leg,
    *,
    now: datetime,
    exclude_key: str | None = None,
) -> Refusal | None:
    """Check ``leg`` against ``desk``'s allow-list and the usage recorded in the store.

    Parameters
    ----------
    session
        The store holding the transfer rows (only read).
    desk
        The desk whose routes, swaps, ``[[preauth]]``, ``[preauth_groups]``,
        ``[preauth_venues]``, cold quotas and ``[[withdraw_addresses]]`` apply.
    leg
        The leg about to be sent, valued at its planned ``amount_usd``.
    now
        The instant of the check (tz-aware): the window is ``[now - 24 h, ...)``.
    exclude_key
        The leg's own idempotency key when its intent row is already in the store, so it does
        not count against itself.

    Returns
    -------
    Refusal | None
        ``None`` when the leg may be sent, else the first check it fails (module table).

    Raises
    ------
    DataError
        ``now`` has no timezone, or the leg's ``amount_usd`` is not a positive Decimal.
    """
    _check_leg(leg, now)
    route_id = leg.route_id
    if route_id is None:
        return Refusal("route_missing", f"leg {leg.leg_no} on {leg.venue} names no route or swap")
    route = desk.route(route_id)
    item = route if route is not None else desk.swap(route_id)
    if item is None:
        return Refusal(
            "route_missing", f"route or swap {route_id!r} is not declared in the desk any more"
        )
    diffs = _mismatch(leg, item)
    if diffs:
        what = "route" if route is not None else "swap"
        return Refusal(
            "asset_or_wallet_mismatch",
            f"leg does not match {what} {route_id}: " + ", ".join(diffs),
        )
    entry = desk.preauth_for(route_id)
    if entry is None:
        return Refusal("not_allow_listed", f"{route_id} has no [[preauth]] entry")
    usd = leg.amount_usd
    if usd > entry.per_transfer_usd:
        return Refusal(
            "per_transfer_cap",
            f"leg {_usd(usd)} over per-transfer cap {_usd(entry.per_transfer_usd)} "
            f"on route {route_id}",
        )
    usage = preauth_usage(session, since=now - WINDOW, exclude_key=exclude_key)
    return _rolling_refusal(desk, usd, route_id, route, entry, usage)


def _rolling_refusal(
    desk: DeskConfig,
    usd: Decimal,
    route_id: str,
    route: RouteCfg | None,
    entry: PreauthCfg,
    usage: PreauthUsage,
) -> Refusal | None:
    """The rolling checks (route, venue, group, cold quota) and the address allow-list;
    ``route`` is None for a swap."""
    over = _over(usd, usage.route_usd(route_id), entry.rolling_24h_usd, f"on route {route_id}")
    if over is not None:
        return Refusal("route_24h_cap", over)
    if route is not None and route.venue in desk.preauth_venues:
        cap = desk.preauth_venues[route.venue]
        over = _over(usd, usage.venue_usd(route.venue), cap, f"of venue {route.venue}")
        if over is not None:
            return Refusal("venue_24h_cap", over)
    if entry.group is not None:
        members = [pa.route for pa in desk.preauth if pa.group == entry.group]
        cap = desk.preauth_groups.get(entry.group, Decimal(0))
        over = _over(usd, usage.routes_usd(members), cap, f"of group {entry.group}")
        if over is not None:
            return Refusal("group_24h_cap", over)
    if route is None:
        return None  # a swap: no cold quota, no address
    if route.cold:
        quota = route.cold_quota_usd_per_day or Decimal(0)
        used = usage.route_usd(route_id)
        if used + usd > quota:
            return Refusal(
                "cold_quota",
                f"leg {_usd(usd)} with {_usd(used)} used in the last 24 h makes "
                f"{_usd(used + usd)}, over the cold-wallet quota {_usd(quota)} per day "
                f"on route {route_id}",
            )
    if route.kind == "onchain":
        return _address_refusal(desk, route)
    return None


def _address_refusal(desk: DeskConfig, route: RouteCfg) -> Refusal | None:
    label = route.withdraw_address
    addr = None if label is None else desk.withdraw_address(label)
    if addr is None:
        named = "no address" if label is None else f"address {label!r}"
        return Refusal(
            "address_not_allowed",
            f"route {route.id} names {named}, which is not in [[withdraw_addresses]]",
        )
    if addr.venue != route.destination_venue or addr.asset != route.asset:
        return Refusal(
            "address_not_allowed",
            f"address {addr.label!r} receives {addr.asset} on {addr.venue}; route {route.id} "
            f"sends {route.asset} to {route.destination_venue}",
        )
    return None
