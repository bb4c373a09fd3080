"""The post-mortem views in ``sql/views.sql``, on PostgreSQL, with a realistic margin call.

Story: pool ``sim-a.pm`` breaches its call level at 09:30 UTC with a 250,000 USD deficit. Plan 1
(strict policy) takes 40k of unrealised PnL, 10k already in the pool, 150k from spot and 50k
from the other venue (a withdrawal, then an internal transfer once deposited); the withdrawal
fails (transfers halted on ``sim-b``), so its second leg is never sent and plan 2 (version 2 of
the call) replaces it with 50k from the funding wallet in two legs (funding → spot → pm), and a
leg on a route outside the allow-list, which the gate refuses. Around it, a day of ordinary
spot → pm transfers gives the latency view something to measure. A third venue, ``sim-c``,
times out often: its legs and their audit events feed the per-venue failure view.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from audit_story import KEY
from ledger_helpers import T0
from sqlalchemy import Engine, text
from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.execution.events import LegEvent, LegRefused, LegUnknown, derive_event_id, record_event
from core.ledger.keys import leg_key
from core.ledger.plans import record_margin_call, record_plan
from core.ledger.store import ensure_venue, init_db
from core.ledger.tables import MarginCallRow
from core.ledger.transfers import (
    TransferIntent,
    intent_for_leg,
    record_refused_leg,
    record_transfer_intent,
    record_transfer_result,
)
from core.ledger.vocab import CallStatus, TransferMode, TransferState, VenueMode
from core.routing.legs import Leg, LegKind
from core.routing.plan import Allocation, CallOutcome, Plan
from core.routing.sources import Policy

pytestmark = pytest.mark.postgres

CALL = "mc-20260312-093000000-0000000000000c01"
# Confirmed latencies (ms) of ordinary spot -> pm USDT transfers on sim-a during the day.
HISTORY_MS = [120.0, 95.0, 180.0, 240.0, 101.0, 133.0, 160.0, 410.0, 99.0, 150.0]
TIERS = {TransferMode.PNL_OFFSET: 1, TransferMode.IN_PLACE: 2}  # DESIGN §5.1; others tier 3
CURE_MS = 212.0  # the 150k spot -> pm transfer of the margin call
W = WalletKind


def _leg(kind: LegKind, venue: str, frm: W, to: W, asset: str, usd: str, **kw: object) -> Leg:
    """A leg moving ``usd`` of ``asset`` (priced 1 USD, or 100,000 for BTC)."""
    price = Decimal(100_000) if asset == "BTC" else Decimal(1)
    return Leg(
        leg_no=int(kw.pop("leg_no", 0)), kind=kind, venue=venue, from_wallet=frm, to_wallet=to,
        asset=asset, amount=Decimal(usd) / price, amount_usd=Decimal(usd), price_usd=price,
        latency_s=1.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


# (source, mode, usd, legs, state and latency of each leg's transfer; None: never sent)
PLAN_1: list[tuple[str, TransferMode, str, tuple[Leg, ...], list[Any]]] = [
    ("sim-a:um:pnl", TransferMode.PNL_OFFSET, "40000",
     (_leg(LegKind.INTERNAL, "sim-a", W.UM, W.PM, "USDT", "40000", route_id="a.um-pm.usdt"),),
     [(TransferState.CONFIRMED, 35.0)]),
    ("sim-a:pm:BTC", TransferMode.IN_PLACE, "10000",
     (_leg(LegKind.MARGIN_ORDER, "sim-a", W.PM, W.PM, "BTC", "10000", to_asset="USDT",
           route_id="a.pm.btc-usdt"),),
     [(TransferState.CONFIRMED, 20.0)]),
    ("sim-a:spot:USDT", TransferMode.TRANSFER, "150000",
     (_leg(LegKind.INTERNAL, "sim-a", W.SPOT, W.PM, "USDT", "150000",
           route_id="a.spot-pm.usdt"),),
     [(TransferState.CONFIRMED, CURE_MS)]),
    ("sim-b:spot:USDT", TransferMode.WITHDRAWAL, "50000",
     (_leg(LegKind.WITHDRAWAL, "sim-b", W.SPOT, W.SPOT, "USDT", "50000", to_venue="sim-a",
           route_id="ba.onchain.usdt"),
      _leg(LegKind.INTERNAL, "sim-a", W.SPOT, W.PM, "USDT", "50000", leg_no=1,
           route_id="a.spot-pm.usdt")),
     [(TransferState.FAILED, 640.0), None]),
]  # fmt: skip
# Re-planned without the withdrawal: the funding wallet covers, through a two-leg chain whose
# first leg (funding -> spot) and second (spot -> pm) both confirm; and a leg to an
# unapproved route is refused by the gate.
PLAN_2: list[tuple[str, TransferMode, str, tuple[Leg, ...], list[Any]]] = [
    ("sim-a:funding:USDT", TransferMode.TRANSFER, "50000",
     (_leg(LegKind.INTERNAL, "sim-a", W.FUNDING, W.SPOT, "USDT", "50000",
           route_id="a.funding-spot.usdt"),
      _leg(LegKind.INTERNAL, "sim-a", W.SPOT, W.PM, "USDT", "50000", leg_no=1,
           route_id="a.spot-pm.usdt")),
     [(TransferState.CONFIRMED, 130.0), (TransferState.CONFIRMED, 130.0)]),
    ("sim-a:cm:BTC", TransferMode.TRANSFER, "20000",
     (_leg(LegKind.INTERNAL, "sim-a", W.CM, W.PM, "BTC", "20000", route_id="a.cm-pm.btc"),),
     ["refused"]),
]  # fmt: skip


def _plan(steps: list[Any]) -> Plan:
    total = sum((Decimal(s[2]) for s in steps), Decimal(0))
    allocations = tuple(
        Allocation(
            call="sim-a.pm", source=src, tier=TIERS.get(mode, 3), mode=mode.value,
            amount_usd=Decimal(usd), credit_usd=Decimal(usd), cost_usd=Decimal(0), eta_s=1.0,
            requests=1, latency_s=1.0, binding="deficit_covered", venue=legs[0].venue, legs=legs,
        )
        for src, mode, usd, legs, _ in steps
    )  # fmt: skip
    return Plan(
        status="optimal", policy=Policy.STRICT, cost_usd=Decimal("18.75"), credit_usd=total,
        uncovered_usd=Decimal(0), allocations=allocations,
        calls=(CallOutcome("sim-a.pm", total, total, Decimal("18.75"), Decimal(0), 0.0, 60.0),),
        solve_ms=2.7, other_policy=None, method="optimiser", fallback_reason=None,
        problem_id="feedfacefeedface", solves=1, stages=("main",), config="strict",
    )  # fmt: skip


def _execute(session: Session, version: int, steps: list[Any], at_s: float) -> None:
    at = T0 + timedelta(seconds=at_s)
    recorded, created = record_plan(session, CALL, _plan(steps), version=version, at=at)
    assert created
    for step_no, (*_, outcomes) in enumerate(steps):
        for leg_no, outcome in enumerate(outcomes):
            if outcome is None:
                continue
            intent = intent_for_leg(recorded, step_no, leg_no)
            if outcome == "refused":
                record_refused_leg(session, intent, at=at, reason="route not on the allow-list")
                continue
            state, latency = outcome
            record_transfer_intent(session, intent, at=at)
            record_transfer_result(
                session, intent.key, state, at=at, sent_at=at, latency_ms=latency
            )


def _history(session: Session) -> None:
    """Ordinary transfers: 10 confirmed, one failed (slow), one unknown, one still pending."""
    outcomes: list[tuple[TransferState, float | None]] = [
        (TransferState.CONFIRMED, ms) for ms in HISTORY_MS
    ]
    outcomes += [(TransferState.FAILED, 5000.0), (TransferState.UNKNOWN, None)]
    for i, (state, ms) in enumerate(outcomes):
        at = T0 - timedelta(hours=10) + timedelta(minutes=20 * i)  # from 23:30 the day before
        key = leg_key("manual-2026-03-12", 1, 0, i)
        intent = TransferIntent(
            key=key, mode=TransferMode.TRANSFER, venue_id="sim-a", from_wallet=WalletKind.SPOT,
            to_wallet=WalletKind.PM, asset=Asset("USDT"), amount=Decimal("2500.5"),
            amount_usd=Decimal("2500.5"),
        )  # fmt: skip
        record_transfer_intent(session, intent, at=at)
        record_transfer_result(session, key, state, at=at, sent_at=at, latency_ms=ms)
    pending = TransferIntent(
        key=leg_key("manual-2026-03-12", 1, 0, 99), mode=TransferMode.TRANSFER, venue_id="sim-a",
        from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
        amount=Decimal(1),
    )  # fmt: skip
    record_transfer_intent(session, pending, at=T0 + timedelta(hours=1))


@pytest.fixture(scope="module")
def story(pg_engine: Engine) -> Engine:
    report = init_db(pg_engine)  # already at head: re-creates the views, changes nothing else
    assert set(report.views) == {
        "transfer_latency_by_route",
        "source_mix_per_call",
        "transfer_failure_rates",
        "venue_failure_rates",
    }
    with Session(pg_engine) as s:
        for venue in ("sim-a", "sim-b"):
            ensure_venue(s, venue, exchange="sim", mode=VenueMode.SIM, at=T0)
        record_margin_call(
            s,
            MarginCallRow(
                id=CALL, pool_id="sim-a.pm", venue_id="sim-a", status=CallStatus.OPEN.value,
                raised_at=T0, ratio_at_raise=Decimal("1.18"), target_ratio=Decimal("1.5"),
                deficit_usd=Decimal("250000"),
            ),
        )  # fmt: skip
        _history(s)
        _execute(s, 1, PLAN_1, at_s=0.05)
        _execute(s, 2, PLAN_2, at_s=1.2)
        call = s.get(MarginCallRow, CALL)
        assert call is not None
        call.status, call.closed_at = CallStatus.CURED.value, T0 + timedelta(seconds=3)
        s.add(call)
        s.commit()
    return pg_engine


def _rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql)).mappings()]


def test_latency_view_with_day_of_transfers_gives_numpy_percentiles_over_confirmed(
    story: Engine,
) -> None:
    (row,) = _rows(
        story,
        "SELECT * FROM transfer_latency_by_route WHERE venue_id = 'sim-a' "
        "AND from_wallet = 'spot' AND to_wallet = 'pm' AND asset = 'USDT' AND mode = 'transfer'",
    )
    # the day's 10, the cure's 150k, and plan 2's second leg (the withdrawal's was never sent)
    confirmed = [*HISTORY_MS, CURE_MS, 130.0]
    assert (row["n_transfers"], row["n_confirmed"], row["n_failed"], row["n_unknown"]) == (
        15, 12, 1, 1,
    )  # fmt: skip
    assert (row["n_in_flight"], row["n_refused"]) == (1, 0)  # the pending one
    for q, column in ((50, "latency_p50_ms"), (95, "latency_p95_ms"), (99, "latency_p99_ms")):
        assert row[column] == pytest.approx(float(np.percentile(confirmed, q)), rel=1e-12)
    # (133 + 150) / 2: the failed 5000 ms transfer is not in the sample
    assert row["latency_p50_ms"] == 141.5
    assert row["latency_max_ms"] == 410.0
    assert row["confirmed_usd"] == Decimal("2500.5") * 10 + Decimal("150000") + Decimal("50000")


def test_latency_view_with_refused_leg_counts_it_apart(story: Engine) -> None:
    (row,) = _rows(story, "SELECT * FROM transfer_latency_by_route WHERE from_wallet = 'cm'")
    assert (row["n_transfers"], row["n_refused"], row["n_confirmed"]) == (1, 1, 0)
    assert row["latency_p50_ms"] is None


def test_latency_view_with_failed_only_route_has_no_percentiles(story: Engine) -> None:
    (row,) = _rows(story, "SELECT * FROM transfer_latency_by_route WHERE mode = 'withdrawal'")
    assert (row["venue_id"], row["to_venue_id"], row["n_failed"]) == ("sim-b", "sim-a", 1)
    assert (row["from_wallet"], row["to_wallet"]) == ("spot", "spot")  # deposits land in spot
    assert row["latency_p50_ms"] is None
    assert row["confirmed_usd"] == 0


def test_source_mix_view_with_replanned_call_shows_planned_delivered_and_shares(
    story: Engine,
) -> None:
    rows = _rows(
        story,
        f"SELECT * FROM source_mix_per_call WHERE margin_call_id = '{CALL}' ORDER BY source_id",
    )
    got = {
        r["source_id"]: (r["mode"], r["planned_usd"], r["delivered_usd"],
                         r["delivered_share_frac"], r["n_failed_or_unknown"])
        for r in rows
    }  # fmt: skip
    assert got == {
        # two confirmed legs, one delivery: only the last leg counts as delivered
        "sim-a:funding:USDT": ("transfer", Decimal(50000), Decimal(50000), Decimal("0.2"), 0),
        "sim-a:pm:BTC": ("in_place", Decimal(10000), Decimal(10000), Decimal("0.04"), 0),
        "sim-a:spot:USDT": ("transfer", Decimal(150000), Decimal(150000), Decimal("0.6"), 0),
        "sim-a:um:pnl": ("pnl_offset", Decimal(40000), Decimal(40000), Decimal("0.16"), 0),
        "sim-b:spot:USDT": ("withdrawal", Decimal(50000), Decimal(0), Decimal(0), 1),
        "sim-a:cm:BTC": ("transfer", Decimal(20000), Decimal(0), Decimal(0), 1),  # refused
    }
    assert sum(r["delivered_usd"] for r in rows) == Decimal(250000)
    assert sum(r["delivered_share_frac"] for r in rows) == 1
    assert {r["n_plans"] for r in rows} == {1}
    assert {r["source_id"]: r["n_transfers"] for r in rows}["sim-a:funding:USDT"] == 2
    tiers = {r["source_id"]: r["tier"] for r in rows}
    assert (tiers["sim-a:um:pnl"], tiers["sim-a:pm:BTC"], tiers["sim-a:funding:USDT"]) == (1, 2, 3)


def test_failure_rate_view_with_two_days_splits_by_utc_day(story: Engine) -> None:
    rows = _rows(
        story,
        "SELECT day_utc::date AS day, venue_id, mode, n_transfers, n_failed, n_unknown, "
        "failed_frac, unknown_frac, n_refused FROM transfer_failure_rates WHERE venue_id = 'sim-a' "
        "AND mode = 'transfer' ORDER BY day",
    )
    by_day = {str(r["day"]): r for r in rows}
    # History starts 23:30 on the 11th, every 20 minutes: two land on the 11th; the other ten,
    # the cure's spot transfer and plan 2's two legs and refused leg (09:30) and the pending
    # one (10:30) on the 12th.
    assert list(by_day) == ["2026-03-11", "2026-03-12"]
    first, second = by_day["2026-03-11"], by_day["2026-03-12"]
    assert (first["n_transfers"], first["n_failed"], first["n_unknown"]) == (2, 0, 0)
    assert (second["n_transfers"], second["n_failed"], second["n_unknown"]) == (15, 1, 1)
    assert second["n_refused"] == 1
    assert float(second["failed_frac"]) == pytest.approx(1 / 15, rel=1e-12)
    assert float(second["unknown_frac"]) == pytest.approx(1 / 15, rel=1e-12)
    assert first["failed_frac"] == 0


# -- venue_failure_rates: sim-c, whose legs time out -----------------------------------------
#: key -> (final status, error kind, timed out first?) for manual sim-c legs
SIM_C: dict[str, tuple[TransferState | None, str | None, bool]] = {
    "c0" * 16: (TransferState.CONFIRMED, None, False),
    "c1" * 16: (TransferState.CONFIRMED, None, True),  # timed out, the lookup found it done
    "c2" * 16: (TransferState.CONFIRMED, None, False),
    "c3" * 16: (TransferState.FAILED, "TransferNotAllowed", True),  # timed out, never applied
    "c4" * 16: (TransferState.UNKNOWN, None, True),  # still unknown
    "c5" * 16: (None, None, False),  # pending: never left
    "c7" * 16: (TransferState.FAILED, "InsufficientFunds", False),
}
REFUSED_KEY = "c6" * 16  # a leg the pre-authorisation gate refused: no transfer row


def _sim_c_leg(cls: type[LegEvent], key: str, at_s: int, **extra: Any) -> LegEvent:
    ts = int((T0 + timedelta(seconds=at_s)).timestamp()) * 10**9
    return cls(
        event_id=derive_event_id(cls, key), ts_event=ts, ts_init=ts, transfer_key=key,
        mode=TransferMode.TRANSFER, venue_id="sim-c", from_wallet=WalletKind.SPOT,
        to_venue_id="sim-c", to_wallet=WalletKind.PM, asset=Asset("USDT"), amount=Decimal(1000),
        **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def timeouts(story: Engine) -> Engine:
    with Session(story) as s:
        ensure_venue(s, "sim-c", exchange="sim", mode=VenueMode.SIM, at=T0)
        for i, (key, (status, error_kind, timed_out)) in enumerate(SIM_C.items()):
            at = T0 + timedelta(minutes=i)
            intent = TransferIntent(
                key=key, mode=TransferMode.TRANSFER, venue_id="sim-c",
                from_wallet=WalletKind.SPOT, to_wallet=WalletKind.PM, asset=Asset("USDT"),
                amount=Decimal(1000), amount_usd=Decimal(1000),
            )  # fmt: skip
            record_transfer_intent(s, intent, at=at)
            if timed_out:
                record_event(s, _sim_c_leg(LegUnknown, key, 60 * i + 10, latency_ms=Decimal(10000),
                                           error_kind="OutcomeUnknown", error_message="timeout"),
                             key=KEY)  # fmt: skip
            if status is not None:
                record_transfer_result(s, key, status, at=at + timedelta(seconds=11), sent_at=at,
                                       latency_ms=120.0, error_kind=error_kind)  # fmt: skip
        record_event(s, _sim_c_leg(LegRefused, REFUSED_KEY, 600, reason="rolling 24 h cap"),
                     key=KEY)  # fmt: skip
        s.commit()
    return story


def test_venue_failure_view_with_timeouts_counts_each_leg_once(timeouts: Engine) -> None:
    rows = {r["venue_id"]: r for r in _rows(timeouts, "SELECT * FROM venue_failure_rates")}
    c = rows["sim-c"]
    counts = ("n_sent", "n_confirmed", "n_failed", "n_unknown_now", "n_timed_out", "n_pending",
              "n_refused")  # fmt: skip
    # Sent: c0 c1 c2 c3 c4 c7; timed out: c1 c3 c4; troubled: c1 c3 c4 c7.
    assert tuple(c[k] for k in counts) == (6, 3, 2, 1, 3, 1, 1)
    assert c["timed_out_frac"] == Decimal("0.5")
    for column, expected in (("failed_frac", 2 / 6), ("troubled_frac", 4 / 6)):
        assert float(c[column]) == pytest.approx(expected, rel=1e-12)
    assert c["failed_error_kinds"] == "InsufficientFunds, TransferNotAllowed"
    assert c["last_failed_at"] == T0 + timedelta(minutes=6, seconds=11)  # c7
    # The margin-call story: sim-a sent the cure's 3 legs, plan 2's two funding legs and 12 of
    # its day's 13 (one is pending); plan 2's leg outside the allow-list was refused.
    a = rows["sim-a"]
    assert tuple(a[k] for k in counts) == (17, 15, 1, 1, 0, 1, 1)
    assert float(a["failed_frac"]) == pytest.approx(1 / 17, rel=1e-12)
    assert float(a["troubled_frac"]) == pytest.approx(2 / 17, rel=1e-12)
    b = rows["sim-b"]
    assert (b["n_sent"], b["n_failed"], b["failed_frac"]) == (1, 1, Decimal(1))
