"""API keys and secrets never appear in logs, exception texts, stored rows or server output.

A representative session runs over both transports (in-process and loopback HTTP): warm-up,
reads, transfers, every fault the simulator injects into a write and a read, a clock-skew
refusal, a venue whose requests are refused as badly signed, lookups. Python logging is
captured at DEBUG for every logger (ccxt logs request headers, with the API key, at DEBUG;
urllib3 logs signed URLs); every error's message, repr and full traceback is kept and written to
a transfer row's ``error_message`` through ``record_transfer_result``; the process's own
stdout/stderr (the loopback server's output included) is captured too. Then the test greps all
of it for the simulated venue's API key and secret: zero hits. The same holds for ``repr()`` of
the configs and venue objects.

The test can fail: it also checks that the capture really held what a leak would come from
(ccxt's header lines, signed URLs, masked by ``core.redact``).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import ccxt
import pytest
from sqlmodel import Session, select

from core.clock import ManualClock
from core.config import load_desk
from core.domain import Asset, WalletKind
from core.errors import PmrError
from core.ledger.claims import StoreTransferClaims
from core.ledger.store import ensure_venue, make_engine
from core.ledger.tables import LedgerTable, TransferRow
from core.ledger.transfers import TransferIntent, record_transfer_intent, record_transfer_result
from core.ledger.vocab import TransferMode, TransferState, VenueMode
from core.redact import MASK, redact, register_secret
from core.venues.ccxt_plumbing import rewrite_api_urls
from core.venues.ccxt_venue import CcxtVenue
from core.venues.factory import build_desk_venues
from core.venues.sim.engine import SimConfig
from core.venues.sim.faults import HELD_KINDS, FaultKind

W = WalletKind
USDT = Asset("USDT")
EXAMPLE_DESK = Path(__file__).resolve().parents[1] / "examples" / "desk.toml"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Capture(logging.Handler):
    """Every record any logger emits, formatted with its traceback, as handlers would."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logs() -> Iterator[_Capture]:
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in ("ccxt", "urllib3", "core", "flows"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    root.setLevel(old_level)


def _texts_of(exc: BaseException) -> list[str]:
    """Message, repr and full traceback (with every chained cause) of ``exc``."""
    out = []
    cur: BaseException | None = exc
    while cur is not None:
        out += [str(cur), repr(cur), repr(cur.args)]
        cur = cur.__cause__ or cur.__context__
    out.append("".join(traceback.format_exception(exc)))
    return out


def _session_over(
    transport: Literal["inprocess", "http"],
    clock: ManualClock,
    errors: list[BaseException],
    reprs: list[str],
) -> tuple[str, str, int]:
    """Run the representative session; return the key, the secret and the signed requests."""
    desk = load_desk(EXAMPLE_DESK)
    with build_desk_venues(desk, clock, transport=transport) as dv:
        a, engine, dialect = dv.venues["sim-a"], dv.engines["sim-a"], dv.dialects["sim-a"]
        key, secret = engine.config.api_key, engine.config.api_secret
        dv.warm_up()
        logging.getLogger("core.test").debug("session over %s with venue %r", transport, a)
        a.balances(W.SPOT)
        a.positions(W.UM)

        def attempt(call: Callable[[], Any]) -> None:
            try:
                call()
            except (PmrError, ccxt.BaseError) as exc:
                errors.append(exc)
                logging.getLogger("core.test").warning("venue error", exc_info=exc)

        def send(k: str) -> None:
            a.transfer(USDT, Decimal(100), W.SPOT, W.MARGIN, k, ts_deadline_ns=None)

        send("s-ok")
        for kind in FaultKind:
            # A held answer nobody releases is dropped after max_hold_s (the default 60 s made
            # this test wait two minutes for nothing): the client sees its timeout either way.
            held = {"max_hold_s": 0.5} if kind in HELD_KINDS else {}
            engine.faults.inject(kind, "/sapi/v1/asset/transfer", method="POST", **held)
            attempt(lambda kind=kind: send(f"s-{kind.value}"))  # type: ignore[misc]
            clock.advance(31)
        for kind in (FaultKind.SERVER_ERROR, FaultKind.GARBLED_AFTER_APPLY):
            engine.faults.inject(kind, "/api/v3/account", times=3)
            attempt(lambda: a.balances(W.SPOT))
        claims_engine = make_engine("sqlite://")
        LedgerTable.metadata.create_all(claims_engine)
        with Session(claims_engine) as s:
            attempt(lambda: a.lookup_transfer("s-timeout_applied", claims=StoreTransferClaims(s)))
        claims_engine.dispose()
        engine.faults.skew_desk_clock(3.0)
        attempt(lambda: send("s-skew"))
        engine.faults.skew_desk_clock(0)
        # The same account reached with a wrong secret: every signed request is refused -1022.
        bad = ccxt.binance({"apiKey": key, "secret": "0" * 64})
        rewrite_api_urls(bad, a.exchange.urls["api"]["sapi"].rsplit("/sapi/", 1)[0])
        if transport == "inprocess":
            bad.session = a.exchange.session
        bad_venue = CcxtVenue(
            "sim-a-bad", bad, clock, asset_decimals={"USDT": 8}, weight_limits_per_min={}
        )
        attempt(bad_venue.warm_up)
        attempt(lambda: bad_venue.balances(W.SPOT))
        reprs += [repr(dv), repr(a), repr(a.exchange), repr(engine.config), repr(desk.venues)]
        reprs += [repr(bad_venue), repr(engine), repr(dialect), str(a.capabilities)]
        return key, secret, len(dialect.request_log)


def _rows_with_errors(errors: list[BaseException]) -> list[str]:
    """Write every error the way the executor records a failed or unknown step; read back."""
    engine = make_engine("sqlite://")
    LedgerTable.metadata.create_all(engine)
    with Session(engine) as session:
        ensure_venue(session, "sim-a", exchange="sim", mode=VenueMode.SIM, at=T0)
        for i, exc in enumerate(errors):
            k = f"err-{i}"
            intent = TransferIntent(
                key=k,
                mode=TransferMode.TRANSFER,
                venue_id="sim-a",
                from_wallet=W.SPOT,
                to_wallet=W.MARGIN,
                asset=USDT,
                amount=Decimal(100),
            )
            record_transfer_intent(session, intent, at=T0)
            record_transfer_result(
                session,
                k,
                TransferState.UNKNOWN,
                at=T0,
                sent_at=T0,
                error_kind=type(exc).__name__,
                error_message=str(exc),
                result={"error": repr(exc)},
            )
        session.commit()
        rows = [r.model_dump_json() for r in session.exec(select(TransferRow)).all()]
    engine.dispose()
    return rows


@pytest.mark.parametrize("transport", ["inprocess", "http"])
def test_session_with_faults_leaks_no_key_or_secret_anywhere(
    transport: Literal["inprocess", "http"],
    clock: ManualClock,
    debug_logs: _Capture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    errors: list[BaseException] = []
    reprs: list[str] = []
    key, secret, requests = _session_over(transport, clock, errors, reprs)
    rows = _rows_with_errors(errors)
    out, err = capfd.readouterr()
    haystack = {
        "logs": debug_logs.lines,
        "errors": [t for exc in errors for t in _texts_of(exc)],
        "rows": rows,
        "server output": [out, err],
        "reprs": reprs,
    }
    for where, texts in haystack.items():
        for text in texts:
            assert key not in text, f"API key in {where}: {text[:300]}"
            assert secret not in text, f"secret in {where}: {text[:300]}"
    # Not vacuous: the session signed requests, failed in many ways, and ccxt logged headers
    # and signed URLs that would have carried the key, all masked.
    assert requests > 25
    assert len(errors) >= 12
    assert len(rows) == len(errors)
    logged = "\n".join(debug_logs.lines)
    assert f"'X-MBX-APIKEY': '{MASK}'" in logged
    assert f"signature={MASK}" in logged
    assert "Traceback" in logged
    assert any("-1022" in str(e) for e in errors)  # the wrongly signed venue was refused


def test_sim_config_repr_shows_no_credentials() -> None:
    cfg = SimConfig(api_key="pmr-test-key-0123456789", api_secret="pmr-test-secret-0123456789")
    assert "pmr-test-key" not in repr(cfg)
    assert "pmr-test-secret" not in repr(cfg)
    assert "seed=0" in repr(cfg)


def test_redact_with_every_shape_a_credential_takes_masks_it() -> None:
    register_secret("Zq8vRn3cXw1pT6sLh0aYk2m")  # a registered secret, wherever it appears
    assert redact("token Zq8vRn3cXw1pT6sLh0aYk2m in text") == f"token {MASK} in text"
    assert (
        redact("GET /api/v3/account?timestamp=1&recvWindow=10000&signature=9f86d081884c7d65")
        == f"GET /api/v3/account?timestamp=1&recvWindow=10000&signature={MASK}"
    )
    assert redact("{'X-MBX-APIKEY': 'abc-123'}") == f"{{'X-MBX-APIKEY': '{MASK}'}}"
    assert (
        redact('{"apiKey": "abc", "secret": "def"}')
        == f'{{"apiKey": "{MASK}", "secret": "{MASK}"}}'
    )
    assert redact("api_key=abc&api_secret=def") == f"api_key={MASK}&api_secret={MASK}"
    assert redact("credentials need api_key_env and secret_env") == (
        "credentials need api_key_env and secret_env"
    )
    register_secret("short")  # under 8 characters: not a credential, never masked
    assert redact("a short text") == "a short text"


def test_log_record_with_secret_in_args_and_traceback_is_masked(debug_logs: _Capture) -> None:
    register_secret("Lk93hQz0Pw7vXc2Rb5Nm")
    try:
        raise ValueError("failed with Lk93hQz0Pw7vXc2Rb5Nm in the message")
    except ValueError as exc:
        logging.getLogger("core.test").error("call %s failed", "Lk93hQz0Pw7vXc2Rb5Nm", exc_info=exc)
    (line,) = [x for x in debug_logs.lines if "call" in x]
    assert "Lk93hQz0Pw7vXc2Rb5Nm" not in line
    assert f"call {MASK} failed" in line
    assert f"failed with {MASK} in the message" in line
