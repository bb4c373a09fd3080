"""Binance payloads about writes and their precision → pmr reports (STYLE rule 3).

- ``GET /sapi/v1/capital/config/getall`` (Wallet "All Coins' Information"): each network's
  ``withdrawIntegerMultiple`` is the step an amount of that coin must be a multiple of; the
  default network's step is the venue's precision for the coin.
- ``GET /sapi/v1/convert/orderStatus`` (Convert "Order status"): ``orderStatus`` is
  ``PROCESS`` / ``ACCEPT_SUCCESS`` / ``SUCCESS`` / ``FAIL``.
- ``GET /sapi/v1/capital/withdraw/history`` (Wallet "Withdraw History"): ``status`` 0 email
  sent, 1 cancelled, 2 awaiting approval, 3 rejected, 4 processing, 5 failure, 6 completed.

Unknown enum values raise; nothing is defaulted silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.domain import Asset, to_decimal
from core.errors import DataError
from core.venues.reports import ConvertResult, VenueTransferStatus, WithdrawalReceipt

__all__ = [
    "AssetSteps",
    "parse_asset_steps",
    "parse_convert_order",
    "parse_convert_status",
    "parse_withdrawal",
    "parse_withdrawal_status",
    "step_decimals",
]

Raw = Mapping[str, Any]


def step_decimals(step: Decimal) -> int:
    """Number of decimals of an amount step (``0.00000001`` → 8, ``1`` → 0, ``0.5`` → 1).

    >>> step_decimals(Decimal("0.00010000")), step_decimals(Decimal("10"))
    (4, 0)
    """
    exponent = step.normalize().as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / infinity never reach here: steps are parsed
        raise DataError("amount step is not finite", value=step)
    return max(0, -exponent)


@dataclass(frozen=True, slots=True)
class AssetSteps:
    """One coin's amount steps on a venue: the default network's, and each network's."""

    default_step: Decimal
    network_steps: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def decimals(self) -> int:
        return step_decimals(self.default_step)


def parse_asset_steps(rows: Sequence[Raw]) -> dict[str, AssetSteps]:
    """``capital/config/getall`` rows → amount steps per coin.

    A network with ``withdrawIntegerMultiple`` of 0 or missing (fiat, leveraged tokens) is
    skipped; a coin with no network step is left out (it cannot be moved). The default step is
    the ``isDefault`` network's, else the coarsest network's (an amount that is a multiple of it
    is a multiple of every finer one).

    >>> rows = [{"coin": "USDT", "networkList": [
    ...     {"network": "ETH", "withdrawIntegerMultiple": "0.000001", "isDefault": True},
    ...     {"network": "TRX", "withdrawIntegerMultiple": "0.00000001", "isDefault": False}]}]
    >>> s = parse_asset_steps(rows)["USDT"]
    >>> (s.default_step, s.decimals, s.network_steps["TRX"] == Decimal("0.00000001"))
    (Decimal('0.000001'), 6, True)
    """
    out: dict[str, AssetSteps] = {}
    for row in rows:
        coin = str(row["coin"])
        steps: dict[str, Decimal] = {}
        default: Decimal | None = None
        for net in row.get("networkList") or ():
            raw = net.get("withdrawIntegerMultiple")
            if raw in (None, ""):
                continue
            step = to_decimal(raw, "withdrawIntegerMultiple", where=f"capital config {coin}")
            if step <= 0:
                continue
            steps[str(net["network"])] = step
            if net.get("isDefault") is True:
                default = step
        if steps:
            out[coin] = AssetSteps(default or max(steps.values()), steps)
    return out


def parse_convert_status(raw: object) -> VenueTransferStatus:
    """Binance Convert ``orderStatus`` → ours."""
    match raw:
        case "SUCCESS":
            return VenueTransferStatus.CONFIRMED
        case "PROCESS" | "ACCEPT_SUCCESS":
            return VenueTransferStatus.PENDING
        case "FAIL":
            return VenueTransferStatus.FAILED
        case other:
            raise DataError(
                "unknown Binance convert order status", field="orderStatus", value=other
            )


def parse_convert_order(venue: str, quote_id: str, info: Raw) -> ConvertResult:
    """``convert/orderStatus`` answer → the conversion it records."""
    where = f"convert order of quote {quote_id} on {venue}"
    if "orderId" not in info:
        raise DataError("convert order answer has no orderId", where=where)
    return ConvertResult(
        venue=venue,
        order_id=str(info["orderId"]),
        quote_id=quote_id,
        status=str(info["orderStatus"]),
        from_asset=Asset(str(info["fromAsset"])),
        to_asset=Asset(str(info["toAsset"])),
        from_amount=to_decimal(info["fromAmount"], "fromAmount", where=where),
        to_amount=to_decimal(info["toAmount"], "toAmount", where=where),
    )


def parse_withdrawal_status(raw: object) -> VenueTransferStatus:
    """Binance withdraw-history ``status`` → ours."""
    match raw:
        case 6 | "6":
            return VenueTransferStatus.CONFIRMED
        case 0 | 2 | 4 | "0" | "2" | "4":
            return VenueTransferStatus.PENDING
        case 1 | 3 | 5 | "1" | "3" | "5":
            return VenueTransferStatus.FAILED
        case other:
            raise DataError("unknown Binance withdrawal status", field="status", value=other)


def parse_withdrawal(venue: str, key: str, info: Raw) -> WithdrawalReceipt:
    """One withdraw-history row → the withdrawal it records.

    ``amount`` in the history is what leaves on chain, net of ``transactionFee``; the receipt's
    amount is the gross debited from spot (net + fee), as ``withdraw()`` reports it.
    """
    where = f"withdrawal {key} on {venue}"
    net = to_decimal(info["amount"], "amount", where=where)
    fee = to_decimal(info.get("transactionFee", "0"), "transactionFee", where=where)
    applied = datetime.strptime(str(info["applyTime"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return WithdrawalReceipt(
        venue=venue,
        key=key,
        withdrawal_id=str(info["id"]),
        asset=Asset(str(info["coin"])),
        amount=net + fee,
        address=str(info["address"]),
        network=str(info["network"]),
        sent_at=applied,
    )
