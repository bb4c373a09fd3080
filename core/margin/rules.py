"""Per-position rule-based margin: notional brackets, size-scaled futures, short options, loans.

These are the building blocks of the ``unified`` and ``standard`` models; each function cites the
venue rule it implements. All in ``Decimal``, USD.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.domain import OptionRight
from core.errors import DataError
from core.margin.book import PricedPosition
from core.params import Bracket, OptionStandardParams, SizeScaledFutureParams

__all__ = [
    "PositionMargin",
    "bracket_margin",
    "loan_mm_usd",
    "short_option_margin",
    "size_scaled_margin",
]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PositionMargin:
    """Initial and maintenance margin of one position, USD."""

    im_usd: Decimal
    mm_usd: Decimal


def _find_bracket(notional_usd: Decimal, brackets: tuple[Bracket, ...]) -> Bracket:
    for b in brackets:
        if b.cap_usd is None or notional_usd < b.cap_usd:
            return b
    return brackets[-1]


def bracket_margin(
    notional_usd: Decimal, brackets: tuple[Bracket, ...], *, im_to_mm_multiple: float
) -> PositionMargin:
    """Return MM = |notional × MMR| − cum from a notional bracket table (Binance leverageBracket).

    IM = notional / max_leverage of the bracket when known, else ``im_to_mm_multiple`` × MM.
    Source: Binance USDⓈ-M "Maintenance margin = notional × MMR − maintenance amount (cum)";
    the same rule per position in Binance PM's ``futuresMM_UM = |MMR × Position × MarkPrice| − cum``.

    Examples
    --------
    >>> b = (Bracket(floor_usd=0, cap_usd=50_000, mmr="0.005", cum_usd=0),)
    >>> bracket_margin(Decimal(2000), b, im_to_mm_multiple=2.0).mm_usd
    Decimal('10.000')
    """
    b = _find_bracket(notional_usd, brackets)
    cum = b.cum_usd if b.cum_usd is not None else _ZERO
    mm = max(_ZERO, notional_usd * b.mmr - cum)
    if b.max_leverage is not None:
        im = max(notional_usd / Decimal(b.max_leverage), mm)
    else:
        im = mm * Decimal(str(im_to_mm_multiple))
    return PositionMargin(im, mm)


def size_scaled_margin(p: PricedPosition, params: SizeScaledFutureParams) -> PositionMargin:
    """Deribit linear-perp margin growing with size: rate = base + per_unit × |size in coin|.

    Deribit (BTC linear perps): IM = 2 % + 0.005 % × size in BTC, MM = 1 % + 0.005 % × size;
    SOL: IM 4 % + 0.0005 % × size in SOL, MM 2 % + 0.0005 % × size. Applied to the notional.
    """
    size_coin = abs(p.units)
    if p.position.instrument.is_inverse:
        size_coin = abs(p.units) / p.mark
    notional = p.notional_usd()
    im_rate = Decimal(str(params.im_base_frac)) + Decimal(str(params.im_per_unit_frac)) * size_coin
    mm_rate = Decimal(str(params.mm_base_frac)) + Decimal(str(params.mm_per_unit_frac)) * size_coin
    return PositionMargin(notional * im_rate, notional * mm_rate)


def short_option_margin(p: PricedPosition, params: OptionStandardParams) -> PositionMargin:
    """Bybit cross-margin short-option margin per contract, times the size in coin.

    With S = index (USD per coin), mark and entry in USD per coin, OTM = out-of-the-money amount:
    MM = max(a·S, a·mark) + mark + b·S;  IM = max( max(c·S − OTM, d·S) + max(entry, mark), MM )
    (a = ``mm_floor_frac`` 3 %, b = ``mm_index_frac`` 0.2 %, c = ``im_otm_frac`` 15 %,
    d = ``im_floor_frac`` 10 %; Bybit "Options margin calculation", cross margin mode).
    Long options need no margin beyond the premium paid.
    """
    if p.position.qty >= 0:
        return PositionMargin(_ZERO, _ZERO)
    inst = p.position.instrument
    if inst.strike is None:
        raise DataError("option without strike", where=f"position {p.key}")
    s = p.underlying_usd
    strike_usd = inst.strike * p.quote_usd
    mark = p.premium_usd_per_coin()
    coin_per_premium = p.underlying_usd if inst.settlement == "inverse" else p.quote_usd
    entry = p.position.entry_price * coin_per_premium
    otm = (
        max(_ZERO, strike_usd - s) if inst.right is OptionRight.CALL else max(_ZERO, s - strike_usd)
    )
    a, b = Decimal(str(params.mm_floor_frac)), Decimal(str(params.mm_index_frac))
    c, d = Decimal(str(params.im_otm_frac)), Decimal(str(params.im_floor_frac))
    mm_per_coin = max(a * s, a * mark) + mark + b * s
    im_per_coin = max(max(c * s - otm, d * s) + max(entry, mark), mm_per_coin)
    size = abs(p.units)
    return PositionMargin(im_per_coin * size, mm_per_coin * size)


def loan_mm_usd(liability: Decimal, price_usd: Decimal, loan_mmr: float) -> Decimal:
    """Binance PM margin-loan MM: (loan + interest) × MMR(leverage) × index price.

    Binance PM Pro example: 15 ETH borrowed at 3x (MMR 10 %) → 1.5 ETH of MM.
    """
    return liability * price_usd * Decimal(str(loan_mmr))
