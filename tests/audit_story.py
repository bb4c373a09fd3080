"""One margin call's audit story, as the executor records it; shared by the audit tests.

Pool ``sim-a.pm`` falls to ratio 1.18 against a 1.5 target at 09:30:00 UTC: a 250,000 USD
deficit. Plan v1 (45 ms to solve) takes 40k of unrealised PnL (35 ms), 110k from spot (212 ms),
50k by withdrawal from ``sim-b`` (no answer in 10 s; the lookup 180 ms later finds it never
happened) and 50k more from ``sim-b`` that the pre-authorisation gate refuses (per-transfer
cap). Plan v2 replaces the missing 100k: 50k from funding (260 ms) and a USDC swap (480 ms,
25 USD of cost). The ratio is restored 10.9 s after the call was raised.

Hand-computed totals the tests assert: 16 events; legs 4 confirmed, 1 failed, 1 refused;
delivered 250,000 USD; cost 25 USD (plus v1's 0 and v2's 25 of planned cost).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.execution.events import (
    AuditedEvent,
    LegConfirmed,
    LegEvent,
    LegOutcome,
    LegRefused,
    LegResolved,
    LegSent,
    LegUnknown,
    MarginCallRaised,
    PlanMade,
    RatioRestored,
    derive_event_id,
    record_event,
)
from core.ledger.chain import AuditKey
from core.ledger.tables import AuditEventRow
from core.ledger.vocab import PlanStatus, TransferMode

KEY = AuditKey.from_text("story-audit-key-do-not-use-on-a-desk-0001", source="test key")
OTHER_KEY = AuditKey.from_text("another-audit-key-do-not-use-on-a-desk-02", source="other key")
CALL = "mc-sim-a.pm-20260312T093000Z"
T0_NS = 1_773_307_800_000_000_000  # 2026-03-12T09:30:00Z
MS = 1_000_000


def leg_key(version: int, step: int, leg: int = 0) -> str:
    """A 32-hex idempotency key per leg (the executor's key function is not this test's
    subject)."""
    return hashlib.sha256(f"{CALL}/{version}/{step}/{leg}".encode()).hexdigest()[:32]


#: version, step, source, mode, venue, from wallet, to venue, asset, amount (= USD here)
LEGS: dict[tuple[int, int], tuple[str, TransferMode, str, WalletKind, str, str, str]] = {
    (1, 0): ("sim-a:um:pnl", TransferMode.PNL_OFFSET, "sim-a", WalletKind.UM, "sim-a", "USDT", "40000"),
    (1, 1): ("sim-a:spot:USDT", TransferMode.TRANSFER, "sim-a", WalletKind.SPOT, "sim-a", "USDT", "110000"),
    (1, 2): ("sim-b:spot:USDT", TransferMode.WITHDRAWAL, "sim-b", WalletKind.SPOT, "sim-a", "USDT", "50000"),
    (1, 3): ("sim-b:funding:USDT", TransferMode.WITHDRAWAL, "sim-b", WalletKind.FUNDING, "sim-a", "USDT", "50000"),
    (2, 0): ("sim-a:funding:USDT", TransferMode.TRANSFER, "sim-a", WalletKind.FUNDING, "sim-a", "USDT", "50000"),
    (2, 1): ("sim-a:spot:USDC", TransferMode.SWAP, "sim-a", WalletKind.SPOT, "sim-a", "USDC", "50000"),
}  # fmt: skip


def _times(at_ms: int) -> dict[str, Any]:
    return {"ts_event": T0_NS + at_ms * MS, "ts_init": T0_NS + at_ms * MS + MS}


def leg_fields(version: int, step: int) -> dict[str, Any]:
    """Every tag and description field of leg ``step.0`` of plan ``version``."""
    source, mode, venue, wallet, to_venue, asset, amount = LEGS[(version, step)]
    return {
        "margin_call_id": CALL, "plan_id": f"plan-{version}", "plan_version": version,
        "step_no": step, "leg_no": 0, "transfer_key": leg_key(version, step),
        "source_id": source, "mode": mode, "venue_id": venue, "from_wallet": wallet,
        "to_venue_id": to_venue, "to_wallet": WalletKind.PM, "asset": Asset(asset),
        "amount": Decimal(amount), "amount_usd": Decimal(amount),
    }  # fmt: skip


def _leg(cls: type[LegEvent], version: int, step: int, at_ms: int, **extra: Any) -> LegEvent:
    event_id = derive_event_id(cls, CALL, version, step, 0)
    return cls(event_id=event_id, **_times(at_ms), **leg_fields(version, step), **extra)


def _plan(version: int, at_ms: int, **extra: Any) -> PlanMade:
    return PlanMade(
        event_id=derive_event_id(PlanMade, CALL, version), **_times(at_ms), margin_call_id=CALL,
        plan_id=f"plan-{version}", plan_version=version, policy="strict",
        status=PlanStatus.OPTIMAL, latency_ms=Decimal(45), uncovered_usd=Decimal(0), **extra,
    )  # fmt: skip


def story_events() -> list[AuditedEvent]:
    """The story's events in the order they happened (and are recorded)."""
    d = Decimal
    return [
        MarginCallRaised(
            event_id=derive_event_id(MarginCallRaised, CALL), **_times(0), margin_call_id=CALL,
            pool_id="sim-a.pm", venue_id="sim-a", ratio=d("1.18"), target_ratio=d("1.5"),
            deficit_usd=d(250000),
        ),
        _plan(1, 45, deficit_usd=d(250000), credit_usd=d(250000), cost_usd=d(0), n_steps=4),
        _leg(LegSent, 1, 0, 50),
        _leg(LegConfirmed, 1, 0, 85, latency_ms=d(35), venue_transfer_id="a-1001", cost_usd=d(0)),
        _leg(LegSent, 1, 1, 90),
        _leg(LegSent, 1, 2, 95),
        _leg(LegRefused, 1, 3, 96, reason="per-transfer cap 25,000 USD < 50,000 USD"),
        _leg(LegConfirmed, 1, 1, 302, latency_ms=d(212), venue_transfer_id="a-1002"),
        _leg(LegUnknown, 1, 2, 10095, latency_ms=d(10000), error_kind="OutcomeUnknown",
             error_message="no answer within 10 s"),
        _leg(LegResolved, 1, 2, 10275, latency_ms=d(180), outcome=LegOutcome.FAILED),
        _plan(2, 10320, deficit_usd=d(100000), credit_usd=d(100000), cost_usd=d(25), n_steps=2,
              reason="v1 s2.0 failed, v1 s3.0 refused"),
        _leg(LegSent, 2, 0, 10325),
        _leg(LegSent, 2, 1, 10330),
        _leg(LegConfirmed, 2, 0, 10585, latency_ms=d(260), venue_transfer_id="a-1003"),
        _leg(LegConfirmed, 2, 1, 10810, latency_ms=d(480), venue_transfer_id="a-1004",
             cost_usd=d(25)),
        RatioRestored(
            event_id=derive_event_id(RatioRestored, CALL), **_times(10900), margin_call_id=CALL,
            plan_id="plan-2", plan_version=2, pool_id="sim-a.pm", ratio=d("1.52"),
            target_ratio=d("1.5"), latency_ms=d(10900),
        ),
    ]  # fmt: skip


def record_story(session: Session, key: AuditKey | None = KEY) -> list[AuditEventRow]:
    """Record the story (flushed, not committed) and return its rows in order."""
    return [record_event(session, event, key=key) for event in story_events()]
