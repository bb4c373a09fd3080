"""Audit-trail throughput: appending events, verifying the chain, anchoring after new events.

On a SQLite file store (WAL), and on PostgreSQL when ``PMR_TEST_POSTGRES_URL`` is set (in a
scratch schema dropped afterwards), for both hash schemes (plain SHA-256 and HMAC-SHA256):

* ``append_per_s``: typed leg events (``LegConfirmed``) through ``record_event``, committed in
  batches of 100 (the executor commits per event; this is the trail's own cost);
* ``verify_per_s``: events per second of the full walk (``verify_audit_chain``);
* ``anchor_after_100_ms``: ``anchor_head`` after 100 new events (the incremental check a
  reconciliation pays), on a trail of ``--events`` events.

Usage: ``uv run python benchmarks/audit.py [--events N]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session

from core.domain import Asset, WalletKind
from core.execution.events import LegConfirmed, derive_event_id, record_event
from core.ledger.audit_log import anchor_head, verify_audit_chain
from core.ledger.chain import AuditKey
from core.ledger.store import init_db, make_engine, normalise_url
from core.ledger.vocab import TransferMode

KEY = AuditKey.from_text("benchmark-audit-key-not-for-a-real-desk", source="benchmark")
T0 = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)


def _event(i: int) -> LegConfirmed:
    ts = 1_773_307_800_000_000_000 + i * 1_000_000
    return LegConfirmed(
        event_id=derive_event_id(LegConfirmed, "bench", i), ts_event=ts, ts_init=ts + 1000,
        margin_call_id="mc-bench", plan_id="plan-bench", plan_version=1, step_no=i, leg_no=0,
        transfer_key=f"{i:032x}", source_id="sim-a:spot:USDT", mode=TransferMode.TRANSFER,
        venue_id="sim-a", from_wallet=WalletKind.SPOT, to_venue_id="sim-a",
        to_wallet=WalletKind.PM, asset=Asset("USDT"), amount=Decimal("1250.5"),
        amount_usd=Decimal("1250.5"), latency_ms=Decimal(180), venue_transfer_id=str(i),
    )  # fmt: skip


def _append(engine: Engine, first: int, n: int, key: AuditKey | None) -> float:
    start = time.perf_counter()
    with Session(engine) as s:
        for i in range(first, first + n):
            record_event(s, _event(i), key=key)
            if (i + 1) % 100 == 0:
                s.commit()
        s.commit()
    return time.perf_counter() - start


def measure(engine: Engine, n_events: int, key: AuditKey | None) -> dict[str, float]:
    init_db(engine)
    append_s = _append(engine, 0, n_events, key)
    with Session(engine) as s:
        anchor_head(s, recorded_by="benchmark", at=T0, key=key)
        s.commit()
    _append(engine, n_events, 100, key)
    with Session(engine) as s:
        start = time.perf_counter()
        anchor_head(s, recorded_by="benchmark", at=T0, key=key)
        anchor_s = time.perf_counter() - start
        s.commit()
        start = time.perf_counter()
        verdict = verify_audit_chain(s, key=key)
        verify_s = time.perf_counter() - start
    assert verdict.complete, str(verdict)
    return {
        "append_per_s": round(n_events / append_s),
        "verify_per_s": round(verdict.checked / verify_s),
        "anchor_after_100_ms": round(anchor_s * 1000, 1),
    }


def _sqlite(n_events: int, key: AuditKey | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'pmr.db'}")
        try:
            return measure(engine, n_events, key)
        finally:
            engine.dispose()


def _postgres(url: str, n_events: int, key: AuditKey | None) -> dict[str, float]:
    schema = f"pmr_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(url))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(normalise_url(url), connect_args={"options": f"-csearch_path={schema}"})
    try:
        return measure(engine, n_events, key)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    figures: dict[str, Any] = {"events": args.events}
    for scheme, key in (("sha256", None), ("hmac_sha256", KEY)):
        figures[f"sqlite_{scheme}"] = _sqlite(args.events, key)
        print(f"sqlite {scheme}: {figures[f'sqlite_{scheme}']}", file=sys.stderr)
        url = os.environ.get("PMR_TEST_POSTGRES_URL")
        if url:
            figures[f"postgresql_{scheme}"] = _postgres(url, args.events, key)
            print(f"postgresql {scheme}: {figures[f'postgresql_{scheme}']}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
