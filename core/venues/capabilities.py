"""What each exchange can do, declared as data (STYLE rule 5), and the desk check built on it.

The adapter and the desk check read the same records: :class:`~core.venues.ccxt_venue.CcxtVenue`
reports them as its ``capabilities`` and refuses what they exclude, and
:func:`desk_capability_problems` (run whenever a desk is loaded, so ``pmr config check`` and
every other command fail fast) names each ``[[swaps]]`` or ``[[routes]]`` entry the venue cannot
carry out, e.g. ``swaps[0] (a.margin.doge-usdt): Binance Convert works from spot or funding
only, not margin``.

Binance, as the adapter drives it:

- **Convert** (``POST /sapi/v1/convert/getQuote`` + ``acceptQuote``) takes ``walletType`` SPOT
  or FUNDING only (Binance Convert API, "Send Quote Request"); collateral in the margin wallet
  is converted by a **margin order** (``POST /sapi/v1/margin/order``; a Portfolio Margin account
  ``POST /papi/v1/margin/order``), which trades inside the cross-margin wallet.
- **Internal transfers** go through the universal transfer (``POST /sapi/v1/asset/transfer``)
  with an explicit ``type`` for the wallet pair (:mod:`core.venues.wallets`); pairs with no type
  (UM→CM, FUNDING→PM ...) go through spot in two routes. The ``pm`` wallet exists only on a
  Portfolio Margin account.
- **On-chain** moves withdraw from spot (``POST /sapi/v1/capital/withdraw/apply``, default
  ``walletType`` 0) and are credited to the receiving venue's spot wallet; a route into any
  other wallet is a second, internal route.
- **Sub-account** transfers are not implemented by the adapter (no sub-account API calls).

This module imports no ccxt and no config at run time, so ``core.config`` can call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from core.domain import WalletKind
from core.venues.wallets import BINANCE_TRANSFER_TYPES

if TYPE_CHECKING:
    from core.config import DeskConfig

__all__ = [
    "BINANCE",
    "EXCHANGE_CAPABILITIES",
    "ConversionMethod",
    "ExchangeCapabilities",
    "desk_capability_problems",
    "is_portfolio_margin_account",
]

W = WalletKind


class ConversionMethod(StrEnum):
    """How a configured swap converts one asset into another on the venue."""

    CONVERT = "convert"  # the exchange's RFQ conversion (Binance Convert)
    MARGIN_ORDER = "margin_order"  # a MARKET order on the cross-margin book, in the margin wallet


@dataclass(frozen=True, slots=True)
class ExchangeCapabilities:
    """What pmr can ask of one exchange through its adapter.

    Attributes
    ----------
    exchange
        The config's ``venues[].exchange`` value.
    label
        The exchange's name in messages.
    transfer_pairs
        Wallet pairs an internal transfer can join directly.
    pm_wallets
        Wallets that exist only on a Portfolio Margin account.
    route_kinds
        Route kinds the adapter implements (``internal``, ``onchain``, ``sub_account``).
    withdraw_wallets, deposit_wallets
        Where an on-chain move leaves from and is credited to.
    conversion_wallets
        Per conversion method, the wallets it works in.
    conversion_names
        Per conversion method, the exchange's product name for messages.
    price_quote
        The asset the exchange quotes its price indices in (Binance: USDT,
        ``/sapi/v1/margin/priceIndex``); its own USD price is not a venue read.
    """

    exchange: str
    label: str
    transfer_pairs: frozenset[tuple[WalletKind, WalletKind]]
    pm_wallets: frozenset[WalletKind]
    route_kinds: frozenset[str]
    withdraw_wallets: frozenset[WalletKind]
    deposit_wallets: frozenset[WalletKind]
    conversion_wallets: Mapping[ConversionMethod, frozenset[WalletKind]]
    conversion_names: Mapping[ConversionMethod, str]
    price_quote: str = "USDT"

    def swap_problem(self, method: ConversionMethod, wallet: WalletKind) -> str | None:
        """Why a conversion by ``method`` inside ``wallet`` is impossible, or ``None``."""
        wallets = self.conversion_wallets.get(method, frozenset())
        if wallet in wallets:
            return None
        name = self.conversion_names.get(method, str(method))
        if not wallets:
            return f"{self.label} has no {name}"
        others = [
            m for m, ws in self.conversion_wallets.items() if m is not method and wallet in ws
        ]
        hint = (
            f'; in {wallet.value} use method = "{others[0].value}" '
            f"({self.conversion_names.get(others[0], others[0].value)})"
            if others
            else ""
        )
        return f"{name} works from {_either(wallets)} only, not {wallet.value}{hint}"

    def route_problem(
        self,
        kind: str,
        from_wallet: WalletKind,
        to_wallet: WalletKind,
        *,
        portfolio_margin: bool,
        side: str = "both",
    ) -> str | None:
        """Why a route of ``kind`` between the two wallets is impossible here, or ``None``.

        ``side`` is ``"from"`` or ``"to"`` for the two venues of an on-chain route.
        """
        if kind not in self.route_kinds:
            return f"{kind} routes are not supported on {self.label} by the adapter"
        own = {"from": (from_wallet,), "to": (to_wallet,)}.get(side, (from_wallet, to_wallet))
        for wallet in own:
            if wallet in self.pm_wallets and not portfolio_margin:
                return (
                    f"the {wallet.value} wallet exists only on a Portfolio Margin account "
                    "(a unified pool holding the margin wallet)"
                )
        if kind == "onchain":
            if side in ("from", "both") and from_wallet not in self.withdraw_wallets:
                return (
                    f"{self.label} withdrawals leave from {_either(self.withdraw_wallets)} only, "
                    f"not {from_wallet.value}; add an internal route to it first"
                )
            if side in ("to", "both") and to_wallet not in self.deposit_wallets:
                return (
                    f"{self.label} credits deposits to {_either(self.deposit_wallets)}, "
                    f"not {to_wallet.value}; add an internal route from it"
                )
            return None
        if (from_wallet, to_wallet) not in self.transfer_pairs:
            return (
                f"{self.label} has no direct transfer from {from_wallet.value} to "
                f"{to_wallet.value}; route it through spot"
            )
        return None


def _either(wallets: frozenset[WalletKind]) -> str:
    """``spot or funding``: wallets in their declared order."""
    return " or ".join(w.value for w in WalletKind if w in wallets)


BINANCE = ExchangeCapabilities(
    exchange="binance",
    label="Binance",
    transfer_pairs=frozenset(BINANCE_TRANSFER_TYPES),
    pm_wallets=frozenset({W.PM}),
    route_kinds=frozenset({"internal", "onchain"}),
    withdraw_wallets=frozenset({W.SPOT}),
    deposit_wallets=frozenset({W.SPOT}),
    conversion_wallets=MappingProxyType(
        {
            ConversionMethod.CONVERT: frozenset({W.SPOT, W.FUNDING}),
            ConversionMethod.MARGIN_ORDER: frozenset({W.MARGIN}),
        }
    ),
    conversion_names=MappingProxyType(
        {
            ConversionMethod.CONVERT: "Binance Convert",
            ConversionMethod.MARGIN_ORDER: "a Binance margin order",
        }
    ),
)

EXCHANGE_CAPABILITIES: Mapping[str, ExchangeCapabilities] = MappingProxyType({"binance": BINANCE})


def is_portfolio_margin_account(desk: DeskConfig, venue: str) -> bool:
    """A venue is a Binance Portfolio Margin account when a ``unified`` pool holds its margin
    wallet (the PM account spans margin + UM + CM)."""
    return any(
        pool.venue == venue and pool.model.value == "unified" and W.MARGIN in pool.wallets
        for pool in desk.pools
    )


def desk_capability_problems(desk: DeskConfig) -> Iterable[str]:
    """Name every swap and route of ``desk`` its venue cannot carry out, one line each.

    Entries on an undeclared venue are skipped (the reference check already names them).
    """
    exchanges = {v.name: EXCHANGE_CAPABILITIES[v.exchange] for v in desk.venues}
    for i, s in enumerate(desk.swaps):
        caps = exchanges.get(s.venue)
        if caps is None:
            continue
        problem = caps.swap_problem(s.method, s.wallet)
        if problem is not None:
            yield f"swaps[{i}] ({s.id}): {problem}"
    for i, r in enumerate(desk.routes):
        src, dst = exchanges.get(r.venue), exchanges.get(r.destination_venue)
        if src is None or dst is None:
            continue
        pm_src = is_portfolio_margin_account(desk, r.venue)
        if r.kind == "onchain":
            problem = src.route_problem(
                r.kind, r.from_wallet, r.to_wallet, portfolio_margin=pm_src, side="from"
            ) or dst.route_problem(
                r.kind,
                r.from_wallet,
                r.to_wallet,
                portfolio_margin=is_portfolio_margin_account(desk, r.destination_venue),
                side="to",
            )
        else:
            problem = src.route_problem(r.kind, r.from_wallet, r.to_wallet, portfolio_margin=pm_src)
        if problem is not None:
            yield f"routes[{i}] ({r.id}): {problem}"


#: Binance's published request-weight limits per minute by API family (Binance "LIMITS": spot
#: ``api`` 6,000 IP weight, ``sapi`` 12,000 IP, UID-weighted sapi endpoints (transfers,
#: withdrawals, Convert) 180,000 per account, USDⓈ-M ``fapi`` and COIN-M ``dapi`` 2,400,
#: Portfolio Margin ``papi`` 6,000, options ``eapi`` 6,000). The live adapter's limiter, the
#: simulator and the router's weight budgets all read this one table.
BINANCE_WEIGHT_LIMITS_PER_MIN: Mapping[str, int] = MappingProxyType(
    {
        "api": 6000,
        "sapi": 12000,
        "fapi": 2400,
        "dapi": 2400,
        "papi": 6000,
        "eapi": 6000,
        "sapi-uid": 180_000,
    }
)

#: The request that moves funds for each leg kind (``core.routing.legs.LegKind`` values) on
#: Binance, keyed by (kind, portfolio-margin account): universal transfer, sub-account
#: universal transfer, Convert accept (the quote is UID-weighted too; the accept moves funds),
#: a margin order (``papi`` on a Portfolio Margin account, ``sapi`` otherwise), a withdrawal.
BINANCE_LEG_ENDPOINTS: Mapping[tuple[str, bool], tuple[str, str]] = MappingProxyType(
    {
        ("internal", False): ("POST", "/sapi/v1/asset/transfer"),
        ("internal", True): ("POST", "/sapi/v1/asset/transfer"),
        ("sub_account", False): ("POST", "/sapi/v1/sub-account/universalTransfer"),
        ("sub_account", True): ("POST", "/sapi/v1/sub-account/universalTransfer"),
        ("convert", False): ("POST", "/sapi/v1/convert/acceptQuote"),
        ("convert", True): ("POST", "/sapi/v1/convert/acceptQuote"),
        ("margin_order", False): ("POST", "/sapi/v1/margin/order"),
        ("margin_order", True): ("POST", "/papi/v1/margin/order"),
        ("withdrawal", False): ("POST", "/sapi/v1/capital/withdraw/apply"),
        ("withdrawal", True): ("POST", "/sapi/v1/capital/withdraw/apply"),
    }
)
