"""Wallet kinds ↔ Binance universal-transfer types, explicit both ways, no silent default.

Why this exists: ccxt 4.5.90's ``binance.transfer(code, amt, from, to)`` maps account names
through ``options['accountsByType']`` and treats *any unknown name* as an isolated-margin symbol:
``transfer('USDT', 1, 'spot', 'future')`` goes out as ``type=MAIN_ISOLATED_MARGIN`` with
``toSymbol=FUTURE``. We therefore never pass account names to ccxt; we pass the Binance
``type`` ourselves (``params={'type': 'MAIN_UMFUTURE'}``), from this table, and an unknown pair
raises :class:`~core.errors.TransferNotAllowed` before any request.

Source: Binance Wallet API, "User Universal Transfer" (POST /sapi/v1/asset/transfer), ENUM
``type``. There is no direct UM↔CM or FUNDING↔PORTFOLIO_MARGIN type; such moves go through spot.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from core.domain import WalletKind
from core.errors import DataError, TransferNotAllowed

__all__ = [
    "BINANCE_TRANSFER_TYPES",
    "WALLET_BY_BINANCE_ACCOUNT",
    "binance_transfer_type",
    "parse_binance_transfer_type",
]

W = WalletKind

# Binance's account names per wallet kind (the parts of the transfer ``type``).
_ACCOUNT: Mapping[WalletKind, str] = MappingProxyType(
    {
        W.SPOT: "MAIN",
        W.FUNDING: "FUNDING",
        W.MARGIN: "MARGIN",
        W.UM: "UMFUTURE",
        W.CM: "CMFUTURE",
        W.OPTIONS: "OPTION",
        W.PM: "PORTFOLIO_MARGIN",
    }
)

WALLET_BY_BINANCE_ACCOUNT: Mapping[str, WalletKind] = MappingProxyType(
    {name: kind for kind, name in _ACCOUNT.items()}
)

_PAIRS: tuple[tuple[WalletKind, WalletKind], ...] = (
    (W.SPOT, W.UM),
    (W.SPOT, W.CM),
    (W.SPOT, W.MARGIN),
    (W.SPOT, W.FUNDING),
    (W.SPOT, W.OPTIONS),
    (W.SPOT, W.PM),
    (W.UM, W.SPOT),
    (W.UM, W.MARGIN),
    (W.UM, W.FUNDING),
    (W.UM, W.OPTIONS),
    (W.CM, W.SPOT),
    (W.CM, W.MARGIN),
    (W.CM, W.FUNDING),
    (W.MARGIN, W.SPOT),
    (W.MARGIN, W.UM),
    (W.MARGIN, W.CM),
    (W.MARGIN, W.FUNDING),
    (W.MARGIN, W.OPTIONS),
    (W.FUNDING, W.SPOT),
    (W.FUNDING, W.UM),
    (W.FUNDING, W.CM),
    (W.FUNDING, W.MARGIN),
    (W.FUNDING, W.OPTIONS),
    (W.OPTIONS, W.SPOT),
    (W.OPTIONS, W.UM),
    (W.OPTIONS, W.MARGIN),
    (W.OPTIONS, W.FUNDING),
    (W.PM, W.SPOT),
)

BINANCE_TRANSFER_TYPES: Mapping[tuple[WalletKind, WalletKind], str] = MappingProxyType(
    {(a, b): f"{_ACCOUNT[a]}_{_ACCOUNT[b]}" for a, b in _PAIRS}
)
_BY_TYPE: Mapping[str, tuple[WalletKind, WalletKind]] = MappingProxyType(
    {t: pair for pair, t in BINANCE_TRANSFER_TYPES.items()}
)


def binance_transfer_type(from_wallet: WalletKind, to_wallet: WalletKind) -> str:
    """Return Binance's universal-transfer ``type`` for a wallet pair, or refuse.

    Raises
    ------
    TransferNotAllowed
        The pair has no Binance transfer type (same wallet, UM→CM, FUNDING→PM ...).

    Examples
    --------
    >>> binance_transfer_type(WalletKind.SPOT, WalletKind.UM)
    'MAIN_UMFUTURE'
    >>> binance_transfer_type(WalletKind.SPOT, WalletKind.PM)
    'MAIN_PORTFOLIO_MARGIN'
    """
    try:
        return BINANCE_TRANSFER_TYPES[(WalletKind(from_wallet), WalletKind(to_wallet))]
    except (KeyError, ValueError):
        raise TransferNotAllowed(
            "no Binance universal-transfer type for this wallet pair; route it through spot",
            from_wallet=str(from_wallet),
            to_wallet=str(to_wallet),
        ) from None


def parse_binance_transfer_type(transfer_type: str) -> tuple[WalletKind, WalletKind]:
    """Map a Binance transfer ``type`` (as in history rows) back to our wallet pair.

    Raises
    ------
    DataError
        The type is not one we send (e.g. isolated-margin types): never guessed.
    """
    match _BY_TYPE.get(transfer_type):
        case (WalletKind() as a, WalletKind() as b):
            return a, b
        case _:
            raise DataError("unknown Binance transfer type", field="type", value=transfer_type)
