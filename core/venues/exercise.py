"""A fixed walk through every venue operation of a desk, returning a JSON-able record.

Used to show that the example desk gives the same results on simulated venues in-process and
over loopback HTTP (tests, ``pmr sim check``) and as the workload of ``benchmarks/venue.py``.
It reads every wallet, position and mark, sends one transfer per internal route of the desk,
converts once per conversion method of the desk's swaps (a Binance Convert quote accepted, a
margin order), moves USDT on-chain for the first on-chain route, lets the simulated clock run past the latencies, and reads everything
again.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import Asset, PositionSide, WalletKind
from core.venues.capabilities import ConversionMethod
from core.venues.ccxt_venue import CcxtVenue

__all__ = ["exercise_desk", "snapshot"]


def snapshot(venue: CcxtVenue) -> dict[str, Any]:
    """Every wallet's balances, every position and every mark of one venue, as strings."""
    out: dict[str, Any] = {"balances": {}, "positions": {}, "marks": {}}
    for wallet in WalletKind:
        if wallet is WalletKind.PM and not venue.portfolio_margin:
            continue
        out["balances"][wallet.value] = {
            b.asset.code: [str(b.amount), str(b.loan), str(b.interest)]
            for b in venue.balances(wallet)
        }
    for wallet in (WalletKind.UM, WalletKind.CM):
        out["positions"][wallet.value] = {
            (p.symbol if p.side is PositionSide.BOTH else f"{p.symbol}:{p.side.value}"): [
                str(p.qty),
                str(p.entry_price),
                str(p.mark_price),
                str(p.unrealized_pnl),
            ]
            for p in venue.positions(wallet)
        }
        out["marks"][wallet.value] = {
            m.symbol: [str(m.mark), str(m.index), m.at.isoformat()]
            for m in venue.mark_prices(wallet)
        }
    return out


def exercise_desk(
    desk: DeskConfig, venues: Mapping[str, CcxtVenue], clock: ManualClock
) -> dict[str, Any]:
    """Run the walk on ``venues`` (built from ``desk``) and return what every step returned."""
    record: dict[str, Any] = {"before": {}, "steps": [], "after": {}}
    for name, venue in venues.items():
        venue.load_markets()
        record["before"][name] = snapshot(venue)
    for route in desk.routes:
        if route.kind != "internal":
            continue
        stable = desk.assets[route.asset].kind == "stablecoin"
        receipt = venues[route.venue].transfer(
            Asset(route.asset),
            Decimal("1000.123456789") if stable else Decimal("0.123456789"),
            route.from_wallet,
            route.to_wallet,
            f"exercise/{route.id}",
        )
        record["steps"].append(
            [
                "transfer",
                route.id,
                receipt.venue_transfer_id,
                str(receipt.amount),
                receipt.venue_type,
            ]
        )
    done: set[ConversionMethod] = set()
    for swap in desk.swaps:
        if swap.method in done:
            continue
        done.add(swap.method)
        venue = venues[swap.venue]
        sold, bought = Asset(swap.from_asset), Asset(swap.to_asset)
        match swap.method:
            case ConversionMethod.CONVERT:
                quote = venue.convert_quote(sold, bought, Decimal(250_000), swap.wallet)
                result = venue.accept_quote(quote)
                record["steps"].append(
                    [
                        "convert",
                        swap.id,
                        str(quote.from_amount),
                        str(quote.to_amount),
                        result.status,
                    ]
                )
            case ConversionMethod.MARGIN_ORDER:
                order = venue.margin_order(sold, bought, Decimal(100_000), f"exercise-{swap.id}")
                record["steps"].append(
                    [
                        "margin_order",
                        swap.id,
                        str(order.from_amount),
                        str(order.to_amount),
                        order.status,
                    ]
                )
    for route in desk.routes:
        if route.kind != "onchain":
            continue
        dst = venues[route.destination_venue]
        address = dst.deposit_address(Asset(route.asset), "TRX")
        sent_at = clock.now()
        wd = venues[route.venue].withdraw(
            Asset(route.asset), Decimal(50_000), address, "TRX", f"exercise/{route.id}"
        )
        clock.advance(route.latency_s + 1)
        deposits = dst.deposits(Asset(route.asset), sent_at)
        record["steps"].append(
            [
                "withdraw",
                route.id,
                str(wd.amount),
                [[str(d.amount), d.credited] for d in deposits],
            ]
        )
        break
    clock.advance(5)
    for route in desk.routes:
        if route.kind == "internal":
            status = venues[route.venue].lookup_transfer(f"exercise/{route.id}")
            record["steps"].append(["lookup", route.id, status.status.value])
    for name, venue in venues.items():
        record["after"][name] = snapshot(venue)
    return record
