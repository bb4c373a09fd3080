"""The desk's pre-authorisation as the executor's gate, and the usage the router plans with.

:func:`desk_gate` adapts :func:`core.execution.preauth.authorise` to the executor's ``LegGate``
``(session, leg, now, key) -> Refusal | None``. The leg's own key is passed as ``exclude_key``:
a leg never counts against its own caps. The executor asks the gate after the leg's ``pending``
row is committed, so two executors' concurrent legs each see the other's (both refused at
worst, never both allowed over a cap).

:func:`router_usage` reads the rolling 24 h usage from the store in the router's terms
(``PreauthUsage.for_router``: per route or swap, per ``[preauth_groups]`` group, per source
venue), so a plan, and a re-plan after a refused or failed leg, stays under the caps the gate
will check.

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
>>> gate = desk_gate(desk)
>>> leg = Leg(0, LegKind.INTERNAL, "sim-a", W.SPOT, W.MARGIN, "USDT", Decimal(1_200_000),
...           Decimal(1_200_000), Decimal(1), 1.0, route_id="a.spot-margin.usdt")
>>> with Session(engine) as s:
...     gate(s, leg, datetime(2026, 11, 27, tzinfo=UTC), "k" * 32).reason
'per_transfer_cap'
>>> with Session(engine) as s:
...     router_usage(s, desk, now=datetime(2026, 11, 27, tzinfo=UTC))
{'sim-a-hot': Decimal('0')}
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel import Session

from core.config import DeskConfig
from core.execution.preauth import WINDOW, Refusal, authorise
from core.ledger.preauth_usage import preauth_usage
from core.routing.legs import Leg

__all__ = ["desk_gate", "router_usage"]


class _DeskGate:
    """``LegGate`` of one desk: :func:`authorise` with the leg's own key left out."""

    def __init__(self, desk: DeskConfig) -> None:
        self.desk = desk

    def __call__(self, session: Session, leg: Leg, now: datetime, key: str) -> Refusal | None:
        return authorise(session, self.desk, leg, now=now, exclude_key=key)


def desk_gate(desk: DeskConfig) -> _DeskGate:
    """The executor's gate for ``desk``: its ``[[preauth]]`` allow-list and rolling caps."""
    return _DeskGate(desk)


def router_usage(session: Session, desk: DeskConfig, *, now: datetime) -> dict[str, Decimal]:
    """The pre-authorisation used in ``[now - 24 h, ...)``, as the router's ``used_24h_usd``."""
    usage = preauth_usage(session, since=now - WINDOW)
    groups = {
        name: [pa.route for pa in desk.preauth if pa.group == name] for name in desk.preauth_groups
    }
    return usage.for_router(groups)
