"""Human summary of a validated desk: what `pmr config check` and `pmr demo` print first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows.cli_common import out

if TYPE_CHECKING:
    from core.config import DeskConfig

__all__ = ["print_desk_summary"]


def print_desk_summary(desk: DeskConfig, *, source: str) -> None:
    """Print venues, pools, wallets and routes of ``desk`` as rich tables."""
    from rich.markup import escape
    from rich.table import Table

    out.print(f"[bold]{escape(desk.desk.name)}[/]  ({escape(source)})")
    venues = Table(title="Venues", title_justify="left")
    for col in ("venue", "kind", "exchange", "credentials"):
        venues.add_column(col)
    for v in desk.venues:
        creds = "-"
        if v.credentials is not None:
            creds = v.credentials.secret_block or f"env:{v.credentials.api_key_env}"
        venues.add_row(v.name, v.kind, v.exchange, creds)
    out.print(venues)

    from core.margin.collateral import desk_collateral_usd

    marks = {p.symbol: p.mark for p in desk.prices}
    gross = desk_collateral_usd(desk, desk.initial_balances(), marks)
    pools = Table(title="Pools", title_justify="left")
    for col in ("pool", "venue", "wallets", "model", "currency", "call / target", "gross USD"):
        pools.add_column(col, justify="right" if col == "gross USD" else "left")
    for p in desk.pools:
        pools.add_row(
            p.id,
            p.venue,
            "+".join(w.value for w in p.wallets),
            p.model.value,
            p.margin_currency,
            f"{p.thresholds.call} / {p.thresholds.target}",
            f"{gross.by_pool[p.id]:,.0f}",
        )
    out.print(pools)

    if gross.free:
        wallets = Table(title="Free collateral (outside pools)", title_justify="left")
        wallets.add_column("venue/wallet")
        wallets.add_column("gross USD", justify="right")
        for (venue, wallet), usd in gross.free.items():
            wallets.add_row(f"{venue}/{wallet.value}", f"{usd:,.0f}")
        out.print(wallets)

    preauth = {pa.route: pa for pa in desk.preauth}
    routes = Table(title="Routes and swaps", title_justify="left")
    for col in ("id", "kind", "from", "to", "asset", "latency s", "per-transfer cap USD"):
        routes.add_column(col)
    for r in desk.routes:
        cap = preauth.get(r.id)
        routes.add_row(
            r.id,
            r.kind,
            f"{r.venue}/{r.from_wallet.value}",
            f"{r.destination_venue}/{r.to_wallet.value}",
            r.asset,
            f"{r.latency_s:g}",
            f"{cap.per_transfer_usd:,.0f}" if cap else "not pre-authorised",
        )
    for s in desk.swaps:
        cap = preauth.get(s.id)
        routes.add_row(
            s.id,
            "swap",
            f"{s.venue}/{s.wallet.value}",
            f"{s.venue}/{s.wallet.value}",
            f"{s.from_asset}->{s.to_asset}",
            f"{s.latency_s:g}",
            f"{cap.per_transfer_usd:,.0f}" if cap else "not pre-authorised",
        )
    out.print(routes)
    out.print(
        f"{len(desk.assets)} assets, {len(desk.instruments)} instruments, "
        f"{len(desk.positions)} positions, {len(desk.preauth)} pre-authorised routes"
    )
    for line in _custody_lines(desk):
        out.print(escape(line))
    for line in desk.warnings():
        out.print(f"[yellow]warning[/]: {escape(line)}")


def _custody_lines(desk: DeskConfig) -> list[str]:
    """The shared caps, cold quotas and withdrawal addresses, one line each (if declared)."""
    lines = []
    caps = [f"venue {v} {c:,.0f}" for v, c in desk.preauth_venues.items()]
    caps += [f"group {g} {c:,.0f}" for g, c in desk.preauth_groups.items()]
    if caps:
        lines.append("Shared rolling 24 h caps (USD): " + ", ".join(caps))
    for r in desk.routes:
        if r.cold and r.cold_quota_usd_per_day is not None:
            lines.append(
                f"Cold route {r.id}: quota {r.cold_quota_usd_per_day:,.0f} USD per rolling 24 h"
            )
    for a in desk.withdraw_addresses:
        lines.append(
            f"Withdrawal address {a.label}: {a.asset} on {a.network} to {a.venue} ({a.address})"
        )
    return lines
