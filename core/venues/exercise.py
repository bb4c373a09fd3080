"""A fixed walk through every venue operation of a desk, returning a JSON-able record.

Used to show that the example desk gives the same results on simulated venues in-process and
over loopback HTTP (tests, ``pmr sim check``) and as the workload of ``benchmarks/venue.py``.
It warms every venue up, reads every wallet, position and mark (the options book included:
positions, marks with IV and index), reads the desk's state from the venues
(:func:`~core.venues.state.read_desk_state`: counts per venue, and every option held with its
mark and IV), sends one transfer per internal route (the amount prepared first, as the executor does), converts once per conversion method of
the desk's swaps (a Binance Convert quote accepted, a margin order), moves USDT on-chain for the
first on-chain route, lets the simulated clock run past the latencies, looks the transfers up,
then runs the unknown-outcome drills (:func:`lookup_drills`) and reads everything again.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from core.clock import ManualClock
from core.config import DeskConfig
from core.domain import Asset, PositionSide, WalletKind
from core.errors import OutcomeUnknown
from core.venues.capabilities import ConversionMethod
from core.venues.ccxt_venue import CcxtVenue
from core.venues.lookup import TransferClaims
from core.venues.sim.engine import SimExchange
from core.venues.sim.faults import FaultKind
from core.venues.state import read_desk_state

__all__ = ["exercise_desk", "lookup_drills", "snapshot", "state_steps"]

TRANSFER = "/sapi/v1/asset/transfer"
ACCEPT = "/sapi/v1/convert/acceptQuote"
WITHDRAW = "/sapi/v1/capital/withdraw/apply"


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
    for wallet in (WalletKind.UM, WalletKind.CM, WalletKind.OPTIONS):
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
            m.symbol: [str(m.mark), str(m.index), str(m.iv), m.at.isoformat()]
            for m in venue.mark_prices(wallet)
        }
    return out


def state_steps(
    desk: DeskConfig, venues: Mapping[str, CcxtVenue], clock: ManualClock
) -> list[list[Any]]:
    """The desk's state as the venues report it: what each venue holds, and its options book."""
    state = read_desk_state(desk, venues, clock)
    steps: list[list[Any]] = []
    for name, vs in state.venues.items():
        pf = vs.portfolio
        steps.append(
            [
                "desk_state",
                name,
                f"balances={len(pf.balances)}",
                f"positions={len(pf.positions)}",
                f"prices={len(pf.prices)}",
                f"bracket_drift={sum(d.venue == name for d in state.bracket_drift)}",
            ]
        )
        for p in pf.positions:
            if p.instrument.is_option:
                price = pf.prices[p.instrument.symbol]
                iv = "-" if price.iv is None else f"{price.iv.normalize():f}"
                steps.append(
                    ["option", name, p.instrument.symbol, f"{p.qty.normalize():f}",
                     f"{price.mark.normalize():f}", iv]
                )  # fmt: skip
    return steps


def _unknown(call: Any) -> str:
    """Run a write expected to end in ``OutcomeUnknown``; return what it raised."""
    try:
        call()
    except OutcomeUnknown as exc:
        return type(exc).__name__
    return "answered"


def lookup_drills(
    venue: CcxtVenue,
    engine: SimExchange,
    clock: ManualClock,
    claims: TransferClaims,
    *,
    route_id: str,
    asset: Asset,
    from_wallet: WalletKind,
    to_wallet: WalletKind,
) -> list[list[Any]]:
    """Unknown outcomes on one internal route of ``venue``, each resolved by a lookup.

    1. timeout after apply → lookup finds it in history;
    2. a 200 from a proxy (HTML) after apply → ``OutcomeUnknown``, lookup finds it;
    3. late apply (booked 30 s after the timeout) → ``not_found_yet``, then found;
    4. a lost request with the same amount as an answered one → ``not_found_yet``, then
       ``not_found`` once the window closes (the answered twin is never adopted) → forget →
       resend under the same key;
    5. a Binance Convert accept that timed out after apply → ``orderStatus`` by quote id;
    6. a withdrawal that timed out after apply → withdraw history by ``withdrawOrderId``.
    """
    steps: list[list[Any]] = []
    amount = venue.prepare_amount(asset, Decimal("321.5"))

    def send(key: str) -> str:
        return _unknown(
            lambda: venue.transfer(asset, amount, from_wallet, to_wallet, key, ts_deadline_ns=None)
        )

    def look(key: str) -> str:
        return venue.lookup_transfer(key, claims=claims).status.value

    for kind in (FaultKind.TIMEOUT_APPLIED, FaultKind.HTML_AFTER_APPLY):
        key = f"drill/{route_id}/{kind.value}"
        engine.faults.inject(kind, TRANSFER, method="POST")
        outcome = send(key)
        clock.advance(1)
        steps.append(["lookup_drill", kind.value, outcome, look(key)])

    key = f"drill/{route_id}/late"
    engine.faults.inject(FaultKind.LATE_APPLY, TRANSFER, method="POST", delay_s=30)
    outcome = send(key)
    clock.advance(1)
    early = look(key)
    clock.advance(30)
    steps.append(["lookup_drill", "late_apply", outcome, early, look(key)])

    venue.transfer(
        asset, amount, from_wallet, to_wallet, f"drill/{route_id}/twin", ts_deadline_ns=None
    )
    key = f"drill/{route_id}/lost"
    engine.faults.inject(FaultKind.TIMEOUT_NOT_APPLIED, TRANSFER, method="POST")
    outcome = send(key)
    clock.advance(1)
    early = look(key)
    clock.advance(venue.journal.window_s)
    late = look(key)
    venue.forget_transfer(key)
    resent = venue.transfer(asset, amount, from_wallet, to_wallet, key, ts_deadline_ns=None)
    steps.append(["lookup_drill", "lost", outcome, early, late, resent.status.value])
    return steps


def _convert_drill(
    venue: CcxtVenue, engine: SimExchange, clock: ManualClock, sold: Asset, bought: Asset
) -> list[Any]:
    quote = venue.convert_quote(sold, bought, Decimal(1000))
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, ACCEPT, method="POST")
    outcome = _unknown(lambda: venue.accept_quote(quote, ts_deadline_ns=None))
    clock.advance(1)
    found = venue.lookup_convert(quote)
    to_amount = "" if found.found is None else str(found.found.to_amount)
    return ["lookup_drill", "convert", outcome, found.status.value, to_amount]


def _withdraw_drill(
    venue: CcxtVenue, engine: SimExchange, clock: ManualClock, address: str
) -> list[Any]:
    key = "drill-withdraw"
    engine.faults.inject(FaultKind.TIMEOUT_APPLIED, WITHDRAW, method="POST")
    outcome = _unknown(
        lambda: venue.withdraw(
            Asset("USDT"), Decimal(20_000), address, "TRX", key, ts_deadline_ns=None
        )
    )
    clock.advance(1)
    found = venue.lookup_withdrawal(key, Asset("USDT"))
    amount = "" if found.found is None else str(found.found.amount)
    return ["lookup_drill", "withdrawal", outcome, found.status.value, amount]


def exercise_desk(
    desk: DeskConfig,
    venues: Mapping[str, CcxtVenue],
    clock: ManualClock,
    *,
    engines: Mapping[str, SimExchange],
    claims: TransferClaims,
) -> dict[str, Any]:
    """Run the walk on ``venues`` (built from ``desk``, simulated by ``engines``) and return
    what every step returned. ``claims`` is the store's view used by every transfer lookup."""
    record: dict[str, Any] = {"before": {}, "steps": [], "after": {}}
    for name, venue in venues.items():
        venue.warm_up()
        record["before"][name] = snapshot(venue)
    record["steps"].extend(state_steps(desk, venues, clock))
    internal = [r for r in desk.routes if r.kind == "internal"]
    for route in internal:
        venue = venues[route.venue]
        stable = desk.assets[route.asset].kind == "stablecoin"
        amount = venue.prepare_amount(
            Asset(route.asset), Decimal("1000.123456789") if stable else Decimal("0.123456789")
        )
        receipt = venue.transfer(
            Asset(route.asset),
            amount,
            route.from_wallet,
            route.to_wallet,
            f"exercise/{route.id}",
            ts_deadline_ns=None,
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
                result = venue.accept_quote(quote, ts_deadline_ns=None)
                record["steps"].append(
                    [
                        "convert",
                        swap.id,
                        str(quote.from_amount),
                        str(quote.to_amount),
                        result.status,
                    ]
                )
                record["steps"].append(
                    _convert_drill(venue, engines[swap.venue], clock, sold, bought)
                )
            case ConversionMethod.MARGIN_ORDER:
                order = venue.margin_order(
                    sold, bought, Decimal(100_000), f"exercise-{swap.id}", ts_deadline_ns=None
                )
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
        src, dst = venues[route.venue], venues[route.destination_venue]
        address = dst.deposit_address(Asset(route.asset), "TRX")
        sent_at = clock.now()
        wd = src.withdraw(
            Asset(route.asset),
            Decimal(50_000),
            address,
            "TRX",
            f"exercise/{route.id}",
            ts_deadline_ns=None,
        )
        clock.advance(route.latency_s + 1)
        deposits = dst.deposits(Asset(route.asset), sent_at)
        record["steps"].append(
            ["withdraw", route.id, str(wd.amount), [[str(d.amount), d.credited] for d in deposits]]
        )
        record["steps"].append(_withdraw_drill(src, engines[route.venue], clock, address))
        break
    clock.advance(5)
    for route in internal:
        status = venues[route.venue].lookup_transfer(f"exercise/{route.id}", claims=claims)
        record["steps"].append(["lookup", route.id, status.status.value])
    if internal:
        first = internal[0]
        record["steps"].extend(
            lookup_drills(
                venues[first.venue],
                engines[first.venue],
                clock,
                claims,
                route_id=first.id,
                asset=Asset(first.asset),
                from_wallet=first.from_wallet,
                to_wallet=first.to_wallet,
            )
        )
    for name, venue in venues.items():
        record["after"][name] = snapshot(venue)
    return record
