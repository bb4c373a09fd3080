"""Every table takes a realistic row and refuses an out-of-vocabulary one, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from ledger_helpers import T0
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.errors import DataError
from core.ledger.coltypes import plain_json
from core.ledger.store import record_snapshot
from core.ledger.tables import (
    MarginReportRow,
    ReconDriftRow,
    StressResultRow,
    TransferRow,
    WalletRow,
)
from core.ledger.vocab import DriftStatus, SnapshotSource


def test_report_stress_drift_and_wallet_rows_round_trip_with_json_detail(
    session: Session, venues: object
) -> None:
    sid = record_snapshot(session, taken_at=T0, source=SnapshotSource.VENUE, venue_id="sim-a")
    detail = {"worst": {"unit": "BTC", "move_frac": "-0.16", "loss_usd": "1812345.5"},
              "contributions": [["BTCUSDT", "-1200000"], ["BTC-27MAR26-90000-C", "-612345.5"]]}  # fmt: skip
    session.add_all(
        [
            WalletRow(venue_id="sim-a", account="main", kind="pm", pool_id="sim-a.pm"),
            MarginReportRow(
                pool_id="sim-a.pm", venue_id="sim-a", snapshot_id=sid, model="unified",
                computed_at=T0, margin_currency="USDT", equity=Decimal("16278250.5"),
                adjusted_equity=Decimal("15990000"), initial_margin=Decimal("9000000"),
                maint_margin=Decimal("7500000"), ratio=Decimal("2.132"), venue_band="normal", desk_level="ok",
                target_ratio=Decimal("1.5"), deficit_to_target=Decimal(0),
                equity_usd=Decimal("16278250.5"), maint_margin_usd=Decimal("7500000"),
                deficit_usd=Decimal(0), standard_maint_margin=Decimal("11250000"),
                capital_efficiency=Decimal("1.5"), worst_scenario="BTC -16% vol up",
                detail=detail,
            ),
            StressResultRow(
                run_id="stress-20260312T09", scenario="2020-03-12", scenario_kind="historical",
                pool_id="sim-a.pm", venue_id="sim-a", computed_at=T0,
                ratio_after=Decimal("1.08"), band_after="reduce_only",
                deficit_usd=Decimal("3150000"), covered_10s_usd=Decimal("1200000"),
                covered_60s_usd=Decimal("2900000"), covered_600s_usd=Decimal("3150000"),
                uncovered_usd=Decimal(0),
            ),
            ReconDriftRow(
                detected_at=T0 + timedelta(minutes=5), venue_id="sim-a", wallet="um",
                asset="USDT", expected=Decimal("1000"), reported=Decimal("998.75"),
                drift=Decimal("-1.25"), drift_usd=Decimal("-1.25"), tolerance=Decimal("0.01"),
                reported_snapshot_id=sid, status=DriftStatus.OPEN.value,
            ),
        ]
    )  # fmt: skip
    session.commit()
    session.expire_all()
    report = session.exec(select(MarginReportRow)).one()
    assert report.detail == detail
    assert report.capital_efficiency == Decimal("1.5")
    drift = session.exec(select(ReconDriftRow)).one()
    assert drift.drift == drift.reported - drift.expected
    assert drift.detected_at == T0 + timedelta(minutes=5)
    stress = session.exec(select(StressResultRow)).one()
    assert stress.covered_60s_usd == Decimal("2900000")


@pytest.mark.parametrize(
    "make_row",
    [
        lambda: WalletRow(venue_id="sim-a", account="main", kind="isolated"),
        lambda: ReconDriftRow(
            detected_at=T0,
            venue_id="sim-a",
            wallet="um",
            asset="USDT",
            expected=Decimal(1),
            reported=Decimal(1),
            drift=Decimal(0),
            tolerance=Decimal(0),
            status="ignored",
        ),
        lambda: TransferRow(
            idempotency_key="k" * 32,
            mode="teleport",
            venue_id="sim-a",
            from_wallet="spot",
            to_venue_id="sim-a",
            to_wallet="um",
            asset="USDT",
            amount=Decimal(1),
            status="pending",
            created_at=T0,
        ),
    ],
    ids=["wallet-kind", "drift-status", "transfer-mode"],
)
def test_row_with_value_outside_vocabulary_is_refused_by_check_constraint(
    session: Session, venues: object, make_row: Callable[[], object]
) -> None:
    with session.begin_nested():
        session.add(make_row())
        with pytest.raises(IntegrityError, match=r"(?i)check"):
            session.flush()


def test_json_detail_with_decimal_and_datetime_is_stored_exactly_as_text(
    session: Session, venues: object
) -> None:
    session.add(
        StressResultRow(
            run_id="r1", scenario="de-peg USDC 0.65", scenario_kind="depeg", pool_id="sim-a.pm",
            venue_id="sim-a", computed_at=T0, band_after="margin_call",
            deficit_usd=Decimal(1), covered_10s_usd=Decimal(0), covered_60s_usd=Decimal(0),
            covered_600s_usd=Decimal(1), uncovered_usd=Decimal(0),
            detail={"shock": Decimal("0.65"), "at": T0, "weights": (0.5, 0.25)},
        )
    )  # fmt: skip
    session.commit()
    session.expire_all()
    row = session.exec(select(StressResultRow)).one()
    assert row.detail == {
        "shock": "0.65",
        "at": "2026-03-12T09:30:00+00:00",
        "weights": [0.5, 0.25],
    }
    assert session.exec(select(MarginReportRow)).all() == []


def test_json_detail_with_nan_is_refused_naming_the_path() -> None:
    with pytest.raises(DataError, match="NaN") as info:
        plain_json({"losses": [1.0, float("nan")]})
    assert info.value.context["path"] == "$.losses[1]"
