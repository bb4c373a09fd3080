"""Legs: the venue operations a collateral source is made of, and their booked amounts.

DESIGN §5.1: "a source is a sequence of legs (transfer, convert, withdrawal + deposit, order),
each with venue, wallets, asset and amount, so a plan can be executed and audited leg by leg".
A :class:`LegTemplate` is what a source knows before the router picks an amount (venue,
wallets, asset, the desk route or swap it uses, the asset's price and step); :func:`legs_for`
turns the templates and a USD amount into :class:`Leg` s with asset amounts, in ``Decimal``:

1. the first leg moves ``amount_usd / price`` of its asset, rounded *down* to the asset's step
   (the venue's transfer precision: the desk's ``assets.<code>.decimals`` for now), and
   ``amount_usd`` is re-derived from what is actually moved (amount × price);
2. a leg after a conversion (``convert`` or ``margin_order``) moves what the plan expects to
   arrive: the USD that entered the conversion less the whole source's cost (fees and
   slippage, conservatively all charged here), at the new asset's price, rounded down;
3. any other leg moves the asset amount the previous leg delivered (same asset, same amount).

A step larger than its source's per-request cap is several requests: :func:`request_chunks`
cuts it into whole asset steps of the first leg's asset, each worth at most the cap, and the
plan gives each chunk its own step and legs (``core.routing.finalise``).

Executing a leg never moves more than planned; the executor moves ``min(planned, received)``
when a conversion fills below expectation. The amounts are exact multiples of each asset's step,
so what is booked is what the venue is asked to move.

Examples
--------
>>> from decimal import Decimal
>>> from core.domain import WalletKind as W
>>> spot_to_margin = LegTemplate(
...     LegKind.INTERNAL, "sim-a", W.SPOT, W.MARGIN, "BTC", price_usd=Decimal("95000"),
...     asset_step=Decimal("1e-8"), latency_s=1.0, route_id="a.spot-margin.btc")
>>> (leg,), usd = legs_for((spot_to_margin,), Decimal("1000"), Decimal("0"))
>>> leg.amount, leg.amount_usd, usd
(Decimal('0.01052631'), Decimal('999.99945'), Decimal('999.99945'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from core.domain import Asset, WalletKind
from core.errors import DataError

__all__ = [
    "BOOK_QUANTUM",
    "Leg",
    "LegKind",
    "LegTemplate",
    "book_usd",
    "check_chain",
    "floor_to_step",
    "legs_for",
    "request_chunks",
]

_ZERO = Decimal(0)
#: Plans book USD figures to 1e-18, the store's resolution (``NUMERIC(38, 18)``): a product of
#: an amount and a rate can have more places, and the store refuses (never rounds) those.
BOOK_QUANTUM = Decimal("1e-18")
_WIDE = Context(prec=60)


def book_usd(value: Decimal) -> Decimal:
    """``value`` rounded half-even to 1e-18 USD, the resolution plans are booked at, without
    trailing zeros (and never in exponent form).

    >>> book_usd(Decimal("0.1") / 3), book_usd(Decimal("999.9994500")), book_usd(Decimal("1E+2"))
    (Decimal('0.033333333333333333'), Decimal('999.99945'), Decimal('100'))
    """
    booked = value.quantize(BOOK_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)
    if booked == booked.to_integral_value():
        return booked.quantize(Decimal(1), context=_WIDE)
    return booked.normalize(context=_WIDE)


# An amount within this fraction of a step of a whole number of steps is that number of steps:
# the USD step is a float (the router's grid), and USD / price may land a hair below a step.
# Absolute in steps, so it never rounds a real shortfall up, however many steps the amount is.
_STEP_NOISE = Decimal("1e-9")


class LegKind(StrEnum):
    """What one leg asks of a venue (one request, or one request and a wait).

    The values fit the store's 16-character vocabulary columns and match the desk's words:
    route ``kind`` ``internal`` / ``sub_account`` / ``onchain`` and swap ``method``
    ``convert`` / ``margin_order``.
    """

    INTERNAL = "internal"  # universal transfer between two wallets of one account
    SUB_ACCOUNT = "sub_account"  # transfer between accounts of one venue
    CONVERT = "convert"  # RFQ conversion (Binance Convert) inside one wallet
    MARGIN_ORDER = "margin_order"  # market order on the cross-margin book, inside the wallet
    WITHDRAWAL = "withdrawal"  # on-chain withdrawal, done when the deposit is credited

    @property
    def converts(self) -> bool:
        """Whether the leg turns one asset into another (the amount after it is an estimate)."""
        return self in {LegKind.CONVERT, LegKind.MARGIN_ORDER}

    @classmethod
    def of_route(cls, route_kind: str) -> LegKind:
        """The leg kind of a desk route ``kind`` (``internal``, ``sub_account``, ``onchain``)."""
        match route_kind:
            case "internal":
                return cls.INTERNAL
            case "sub_account":
                return cls.SUB_ACCOUNT
            case "onchain":
                return cls.WITHDRAWAL
            case _:
                raise DataError("unknown route kind", field="kind", value=route_kind)


def _decimal(value: object, field: str, where: str, *, positive: bool) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise DataError(f"{field} must be a decimal number", leg=where, field=field, value=value)
    try:
        d = Decimal(value)
    except ArithmeticError:
        raise DataError(f"{field} is not a number", leg=where, field=field, value=value) from None
    if not d.is_finite() or (d <= 0 if positive else d < 0) or d >= Decimal(10) ** 18:
        raise DataError(
            f"{field} must be {'> 0' if positive else '>= 0'} and below 1e18",
            leg=where,
            field=field,
            value=value,
        )
    return d


def _shape_problem(
    kind: LegKind,
    from_wallet: WalletKind,
    to_wallet: WalletKind,
    asset: str,
    to_asset: str | None,
    venue: str,
    to_venue: str | None,
) -> str | None:
    """Why these fields cannot describe one leg of ``kind``, or ``None``."""
    if kind.converts:
        if to_asset is None or to_asset == asset:
            return f"a {kind.value} leg needs a to_asset other than {asset}"
        if to_wallet != from_wallet or to_venue not in (None, venue):
            return f"a {kind.value} leg stays in one wallet of one venue"
        return None
    if to_asset not in (None, asset):
        return f"a {kind.value} leg moves one asset (to_asset must be empty)"
    if kind is LegKind.WITHDRAWAL:
        if to_venue is None or to_venue == venue:
            return "a withdrawal leg goes to another venue (set to_venue)"
        return None
    if to_venue not in (None, venue):
        return f"a {kind.value} leg stays on one venue; use a withdrawal leg"
    if kind is LegKind.INTERNAL and from_wallet == to_wallet:
        return "an internal leg joins two different wallets"
    return None


@dataclass(frozen=True, slots=True)
class LegTemplate:
    """One leg of a source before the router picks an amount.

    Parameters
    ----------
    kind
        What the venue is asked to do.
    venue
        The venue the request goes to (the withdrawing venue for a withdrawal).
    from_wallet, to_wallet
        Where the asset leaves and where the leg's result lands (one wallet for conversions).
    asset
        Asset code leaving ``from_wallet``.
    price_usd
        USD per unit of ``asset`` when the source was built (the mark the plan is valued at).
    asset_step
        Smallest amount of ``asset`` the venue moves; planned amounts are multiples of it.
    latency_s
        Expected seconds from request to the result being credited.
    route_id
        The desk route or swap this leg uses: its pre-authorisation allow-list entry.
    to_venue
        Receiving venue of a withdrawal (``None`` otherwise).
    to_asset
        Asset a conversion delivers (``None`` otherwise).
    """

    kind: LegKind
    venue: str
    from_wallet: WalletKind
    to_wallet: WalletKind
    asset: str
    price_usd: Decimal
    asset_step: Decimal
    latency_s: float = 0.0
    route_id: str | None = None
    to_venue: str | None = None
    to_asset: str | None = None

    def __post_init__(self) -> None:
        where = f"{self.route_id or self.kind}@{self.venue}"
        try:
            object.__setattr__(self, "kind", LegKind(self.kind))
        except ValueError:
            known = ", ".join(k.value for k in LegKind)
            raise DataError(
                f"unknown leg kind; known: {known}", leg=where, field="kind", value=self.kind
            ) from None
        for name in ("from_wallet", "to_wallet"):
            object.__setattr__(
                self, name, WalletKind.parse(str(getattr(self, name)), where=f"leg {where}")
            )
        if not isinstance(self.venue, str) or not self.venue:
            raise DataError("a leg needs a venue", leg=where, field="venue")
        for name in ("asset", "to_asset"):
            code = getattr(self, name)
            if code is not None:
                Asset(code)  # validates the code
        for name in ("price_usd", "asset_step"):
            value = _decimal(getattr(self, name), name, where, positive=True)
            if value != value.quantize(BOOK_QUANTUM, context=_WIDE):
                raise DataError(
                    f"{name} has more than 18 decimal places (the store's resolution)",
                    leg=where,
                    field=name,
                    value=value,
                )
            object.__setattr__(self, name, value)
        if not 0.0 <= float(self.latency_s) < 1e9:
            raise DataError("latency_s must be in [0, 1e9) s", leg=where, value=self.latency_s)
        object.__setattr__(self, "latency_s", float(self.latency_s))
        problem = _shape_problem(
            self.kind,
            self.from_wallet,
            self.to_wallet,
            self.asset,
            self.to_asset,
            self.venue,
            self.to_venue,
        )
        if problem is not None:
            raise DataError(problem, leg=where)

    @property
    def delivers_asset(self) -> str:
        """The asset this leg leaves in ``to_wallet``."""
        return self.to_asset or self.asset

    @property
    def delivers_venue(self) -> str:
        """The venue whose ``to_wallet`` receives the leg's result."""
        return self.to_venue or self.venue


def check_chain(legs: Sequence[LegTemplate], *, where: str) -> None:
    """Refuse legs that do not join up: each leg starts where, and with what, the last ended.

    Raises
    ------
    DataError
        Naming the source (``where``) and the leg that does not follow on.
    """
    for k in range(1, len(legs)):
        prev, leg = legs[k - 1], legs[k]
        if (leg.venue, leg.from_wallet, leg.asset) != (
            prev.delivers_venue,
            prev.to_wallet,
            prev.delivers_asset,
        ):
            raise DataError(
                f"leg {k} does not start where leg {k - 1} ends ({prev.delivers_venue} "
                f"{prev.to_wallet.value} {prev.delivers_asset})",
                source=where,
                field=f"legs[{k}]",
            )


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of a plan step with its amount: what one venue request (and wait) will move.

    ``amount`` is in ``asset``, a multiple of the asset's step; ``amount_usd`` is
    ``amount × price_usd`` (the value the plan booked it at). ``leg_no`` counts from 0 within
    the step; the leg's idempotency key is ``core.ledger.keys.leg_key(margin call id, plan
    version, step_no, leg_no)``, given when the plan is recorded.
    """

    leg_no: int
    kind: LegKind
    venue: str
    from_wallet: WalletKind
    to_wallet: WalletKind
    asset: str
    amount: Decimal
    amount_usd: Decimal
    price_usd: Decimal
    latency_s: float
    route_id: str | None = None
    to_venue: str | None = None
    to_asset: str | None = None

    @property
    def destination_venue(self) -> str:
        return self.to_venue or self.venue


def _tidy(value: Decimal) -> Decimal:
    """``value`` without trailing zeros, never in exponent form (``2005622.5``, ``300``)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_WIDE)
    return value.normalize(context=_WIDE)


def floor_to_step(amount: Decimal, step: Decimal) -> Decimal:
    """``amount`` rounded down to a multiple of ``step``; within a billionth of a step of a
    multiple counts as that multiple (the router's USD grid is float, so ``usd / price`` may
    land a hair below a whole number of steps).

    Examples
    --------
    >>> floor_to_step(Decimal("0.0123456789"), Decimal("1e-8"))
    Decimal('0.01234567')
    >>> floor_to_step(Decimal("2.99999999999999999"), Decimal("0.01"))
    Decimal('3.00')
    """
    if amount <= 0:
        return _ZERO
    steps = amount / step
    nearest = steps.to_integral_value(rounding=ROUND_HALF_EVEN)
    if abs(steps - nearest) <= _STEP_NOISE:
        return (nearest * step).quantize(step)
    return (steps.to_integral_value(rounding=ROUND_FLOOR) * step).quantize(step)


def legs_for(
    templates: Sequence[LegTemplate], amount_usd: Decimal, cost_usd: Decimal
) -> tuple[tuple[Leg, ...], Decimal]:
    """The legs that move ``amount_usd`` through ``templates``, and the USD really moved.

    The second value is the first leg's amount × price (``amount_usd`` rounded down to the
    first asset's step): the plan books the step at that figure. When any leg would move less
    than one step of its asset the step cannot be executed as planned: no legs are returned
    (the plan says the step is not executable) and the USD figure is still the first leg's.
    """
    legs: list[Leg] = []
    moved_usd = _ZERO
    carry: Decimal | None = None  # asset amount the previous leg delivered (same asset)
    carry_usd = amount_usd
    for k, t in enumerate(templates):
        if k == 0:
            amount = floor_to_step(amount_usd / t.price_usd, t.asset_step)
        elif carry is None:  # after a conversion: what is expected to arrive, in the new asset
            amount = floor_to_step(carry_usd / t.price_usd, t.asset_step)
        else:
            amount = floor_to_step(carry, t.asset_step)
        amount = _tidy(amount)
        usd = book_usd(amount * t.price_usd)
        if k == 0:
            moved_usd = usd
        if amount <= 0:
            return (), moved_usd
        legs.append(
            Leg(
                leg_no=k,
                kind=t.kind,
                venue=t.venue,
                from_wallet=t.from_wallet,
                to_wallet=t.to_wallet,
                asset=t.asset,
                amount=amount,
                amount_usd=usd,
                price_usd=t.price_usd,
                latency_s=t.latency_s,
                route_id=t.route_id,
                to_venue=t.to_venue,
                to_asset=t.to_asset,
            )
        )
        if t.kind.converts:
            carry, carry_usd = None, max(_ZERO, usd - cost_usd)
        else:
            carry, carry_usd = amount, usd
    return tuple(legs), moved_usd


def _most_per_request(templates: Sequence[LegTemplate], unit_usd: Decimal, cap_usd: Decimal) -> int:
    """The most first-asset steps one request may move with no leg valued above ``cap_usd``.

    The first leg is worth ``steps × unit_usd``; a later leg of the same asset is valued at its
    own template's price, which a problem file may set higher, so the whole chain is checked
    (at zero cost, the most a conversion can deliver) and the count lowered until it fits.
    """
    most = int((cap_usd / unit_usd).to_integral_value(rounding=ROUND_FLOOR, context=_WIDE))
    while most > 0:
        legs, first_usd = legs_for(templates, book_usd(most * unit_usd), _ZERO)
        top = max((g.amount_usd for g in legs), default=first_usd)
        if top <= cap_usd:
            return most
        shrunk = (most * cap_usd / top).to_integral_value(rounding=ROUND_FLOOR, context=_WIDE)
        most = min(most - 1, int(shrunk))
    return 0


def request_chunks(
    templates: Sequence[LegTemplate],
    amount_usd: Decimal,
    per_request_usd: Decimal,
    *,
    min_ticket_usd: Decimal = _ZERO,
) -> tuple[Decimal, ...]:
    """The USD amounts of the requests that carry ``amount_usd`` through ``templates`` when no
    leg of one request may be valued above ``per_request_usd`` (the source's per-request cap:
    the route's ``per_request_max_usd`` and the allow-list's ``per_transfer_usd``).

    Each chunk is a whole number of steps of the first leg's asset: as many full chunks as fit
    (the most steps worth at most the cap, rounded down), then the remainder; the chunks' asset
    amounts add up to the first leg's amount for ``amount_usd``. When the remainder is below
    ``min_ticket_usd`` (a venue's minimum withdrawal) the steps are spread evenly over the same
    number of chunks instead, larger chunks first (each still within the cap). Each amount is
    ``steps × step × price`` booked like a leg's (``book_usd``), so it is what ``legs_for``
    books for that chunk's first leg.

    Returns one amount when the step fits one request, and ``()`` when not even one asset
    step fits under the cap (no request can carry it).

    Examples
    --------
    >>> from core.domain import WalletKind as W
    >>> usdt = LegTemplate(LegKind.INTERNAL, "sim-a", W.SPOT, W.MARGIN, "USDT",
    ...     price_usd=Decimal("1"), asset_step=Decimal("1e-6"), route_id="a.spot-margin.usdt")
    >>> request_chunks((usdt,), Decimal("2500000"), Decimal("1000000"))
    (Decimal('1000000'), Decimal('1000000'), Decimal('500000'))
    >>> request_chunks((usdt,), Decimal("2005000"), Decimal("1000000"),
    ...     min_ticket_usd=Decimal("10000"))
    (Decimal('668333.333334'), Decimal('668333.333333'), Decimal('668333.333333'))
    """
    if not templates:
        raise DataError("a step without legs has no requests to cut", field="legs")
    first = templates[0]
    unit = first.price_usd * first.asset_step
    total = int(
        (floor_to_step(amount_usd / first.price_usd, first.asset_step) / first.asset_step)
        .to_integral_value(context=_WIDE)
    )  # fmt: skip
    if total <= 0:
        return ()
    most = _most_per_request(templates, unit, per_request_usd)
    if most <= 0:
        return ()
    full, rest = divmod(total, most)
    counts = [most] * full + ([rest] if rest else [])
    if len(counts) > 1 and rest and rest * unit < min_ticket_usd:
        base, extra = divmod(total, len(counts))
        counts = [base + 1] * extra + [base] * (len(counts) - extra)
    return tuple(book_usd(n * first.asset_step * first.price_usd) for n in counts)
