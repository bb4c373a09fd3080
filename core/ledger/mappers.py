"""Explicit mappers between ``core.domain`` value objects and ledger rows (STYLE rule 20).

Why explicit functions instead of making the domain objects tables: rows carry storage ids and
enum text, domain objects carry invariants; keeping the seam in one place means a column rename
touches this file only. ``*_to_row`` refuses amounts that ``NUMERIC(38, 18)`` would round
(``fit_decimal``) with a ``DataError`` naming the field, so what is read back is exactly what was
booked. ``*_from_row`` rebuilds the value object through its validating constructor, so a row
edited into nonsense is refused on the way out as well.

Examples
--------
>>> from decimal import Decimal
>>> from core.domain import Asset, Balance, WalletKind
>>> b = Balance("sim-a", WalletKind.UM, Asset("USDT"), Decimal("1250.5"))
>>> balance_from_row(balance_to_row(b, snapshot_id=1)) == b
True
"""

from __future__ import annotations

from decimal import Decimal

from core.domain import (
    Asset,
    Balance,
    Instrument,
    InstrumentKind,
    MarkPrice,
    OptionRight,
    Position,
    PositionSide,
    Settlement,
    WalletKind,
)
from core.ledger.coltypes import fit_decimal, tidy_decimal
from core.ledger.tables import BalanceRow, PositionRow, PriceRow

__all__ = [
    "balance_from_row",
    "balance_to_row",
    "position_from_row",
    "position_to_row",
    "price_from_row",
    "price_to_row",
]


def _fit(value: Decimal, field: str, where: str) -> Decimal:
    return tidy_decimal(fit_decimal(value, field, where=where))


def _fit_opt(value: Decimal | None, field: str, where: str) -> Decimal | None:
    return None if value is None else _fit(value, field, where)


def balance_to_row(balance: Balance, snapshot_id: int) -> BalanceRow:
    """Return the ``balance_snapshot`` row for ``balance`` inside snapshot ``snapshot_id``."""
    where = f"balance {balance.venue}/{balance.wallet}/{balance.asset}"
    return BalanceRow(
        snapshot_id=snapshot_id,
        venue_id=balance.venue,
        wallet=balance.wallet.value,
        asset=balance.asset.code,
        amount=_fit(balance.amount, "amount", where),
        loan=_fit(balance.loan, "loan", where),
        interest=_fit(balance.interest, "interest", where),
    )


def balance_from_row(row: BalanceRow) -> Balance:
    """Rebuild the ``Balance`` a ``balance_snapshot`` row holds."""
    return Balance(
        venue=row.venue_id,
        wallet=WalletKind.parse(row.wallet, where=f"balance_snapshot id={row.id}"),
        asset=Asset(row.asset),
        amount=row.amount,
        loan=row.loan,
        interest=row.interest,
    )


def position_to_row(position: Position, snapshot_id: int) -> PositionRow:
    """Return the ``position_snapshot`` row (instrument inlined) for ``position``."""
    inst = position.instrument
    where = f"position {position.key}"
    return PositionRow(
        snapshot_id=snapshot_id,
        venue_id=position.venue,
        wallet=position.wallet.value,
        symbol=inst.symbol,
        instrument_kind=inst.kind.value,
        underlying=inst.underlying.code,
        quote=inst.quote.code,
        contract_size=_fit(inst.contract_size, "contract_size", where),
        expiry_at=inst.expiry,
        strike=_fit_opt(inst.strike, "strike", where),
        option_right=None if inst.right is None else inst.right.value,
        settlement=None if inst.settlement is None else inst.settlement.value,
        qty=_fit(position.qty, "qty", where),
        entry_price=_fit(position.entry_price, "entry_price", where),
        side=position.side.value,
    )


def position_from_row(row: PositionRow) -> Position:
    """Rebuild the ``Position`` (and its ``Instrument``) a ``position_snapshot`` row holds."""
    instrument = Instrument(
        symbol=row.symbol,
        kind=InstrumentKind(row.instrument_kind),
        underlying=Asset(row.underlying),
        quote=Asset(row.quote),
        contract_size=row.contract_size,
        expiry=row.expiry_at,
        strike=row.strike,
        right=None if row.option_right is None else OptionRight(row.option_right),
        settlement=None if row.settlement is None else Settlement(row.settlement),
    )
    return Position(
        venue=row.venue_id,
        wallet=WalletKind.parse(row.wallet, where=f"position_snapshot id={row.id}"),
        instrument=instrument,
        qty=row.qty,
        entry_price=row.entry_price,
        side=PositionSide(row.side),
    )


def price_to_row(price: MarkPrice, snapshot_id: int) -> PriceRow:
    """Return the ``price_snapshot`` row for ``price``."""
    where = f"price {price.symbol}"
    return PriceRow(
        snapshot_id=snapshot_id,
        symbol=price.symbol,
        mark=_fit(price.mark, "mark", where),
        index_price=_fit_opt(price.index, "index", where),
        iv=_fit_opt(price.iv, "iv", where),
        priced_at=price.at,
    )


def price_from_row(row: PriceRow) -> MarkPrice:
    """Rebuild the ``MarkPrice`` a ``price_snapshot`` row holds."""
    return MarkPrice(
        symbol=row.symbol,
        mark=row.mark,
        at=row.priced_at,
        index=row.index_price,
        iv=row.iv,
    )
