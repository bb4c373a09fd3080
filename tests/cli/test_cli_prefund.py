"""``pmr prefund --apply`` end to end on the simulated venues and a real SQLite store: the
example desk's advice is executed (two legs, the route's per-transfer cap), a second run of the
same recommendation sends nothing, a leg over a rolling cap is refused and reported with exit
1, and bad input exits 2 with nothing recorded."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from core.clock import ManualClock
from core.config import load_desk
from core.execution.prefund import open_prefund
from core.ledger.audit_log import verify_audit_chain
from core.ledger.store import init_db, make_engine
from core.stress.prefund import PrefundAdvice, Prepositioning
from flows.cli import app

runner = CliRunner()
EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
AS_OF = "2026-11-27T12:00:00Z"
APPLY = ("prefund", "--desk", str(EXAMPLE_DESK), "--as-of", AS_OF, "--scenario",
         "halt+crash@sim-b", "--apply", "--unkeyed")  # fmt: skip


def _store(tmp_path: Path) -> str:
    path = tmp_path / "pmr.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    engine.dispose()
    return f"sqlite:///{path}"


def _count(url: str, table: str, where: str = "1=1") -> int:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])


def _chain_ok(url: str) -> None:
    engine = make_engine(url)
    with Session(engine) as s:
        assert verify_audit_chain(s).ok
    engine.dispose()


def test_prefund_apply_executes_the_advice_and_a_second_apply_sends_nothing(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path)
    first = runner.invoke(app, [*APPLY, "--url", url])
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    opened = next(line for line in lines if line.startswith("pre-funding pf-20261127-"))
    pid = opened.split()[1]
    assert opened == f"pre-funding {pid} opened: 2 step(s)"
    for expected in (
        "step 0: internal 1,000,000 USDT sim-b/spot -> sim-b/options "
        "(sim-b.opt:b.spot-options.usdt, 1,000,000.00 USD)",
        "step 1: internal 102,543.6 USDT sim-b/spot -> sim-b/options "
        "(sim-b.opt:b.spot-options.usdt, 102,543.60 USD)",
        "leg v1/0/0 confirmed (venue id 100000001)",
        "leg v1/1/0 confirmed (venue id 100000002)",
        f"close: pre-funding {pid} -> applied (moved 1,102,543.60 USD, not moved 0.00 USD)",
        "pre-positioned 1,102,543.6 USDT from sim-b/spot to sim-b/options (sim-b.opt, route "
        "b.spot-options.usdt)",
        "applied; 2 leg(s): 2 confirmed; moved 1,102,543.60 of 1,102,543.60 USD",
        "re-ran 1 scenario(s) on the venues after the moves: every one covered within 60 s",
    ):
        assert expected in lines, expected
    assert _count(url, "transfer", "status = 'confirmed' AND attempts = 1") == 2
    assert _count(url, "margin_call", "kind = 'prefund' AND status = 'applied'") == 1

    second = runner.invoke(app, [*APPLY, "--url", url])
    assert second.exit_code == 0, second.output
    assert f"pre-funding {pid} is already on record (applied): nothing sent" in second.stdout
    assert "sent in" not in second.stdout
    assert _count(url, "transfer") == 2
    assert _count(url, "audit_event") == 7
    _chain_ok(url)

    shown = runner.invoke(app, ["audit", "show", "--call", pid, "--url", url])
    assert shown.exit_code == 0, shown.output
    assert f"pre-funding {pid}" in shown.stdout
    assert f"{pid}: applied after 500 ms; plans v1; legs 2 confirmed" in shown.stdout
    rerun = runner.invoke(app, ["execute", "--desk", str(EXAMPLE_DESK), "--plan", pid,
                                "--url", url, "--unkeyed"])  # fmt: skip
    assert rerun.exit_code == 2
    assert "is applied: its plan is not executed; nothing sent" in rerun.output


def test_prefund_apply_over_a_rolling_cap_exits_1_saying_what_was_not_moved(
    tmp_path: Path,
) -> None:
    text = EXAMPLE_DESK.read_text()
    entry = 'route = "b.spot-options.usdt"\nper_transfer_usd = 1_000_000\nrolling_24h_usd = '
    assert text.count(entry + "4_000_000") == 1
    desk = tmp_path / "capped.toml"
    desk.write_text(text.replace(entry + "4_000_000", entry + "1_050_000"))
    url = _store(tmp_path)
    r = runner.invoke(app, ["prefund", "--desk", str(desk), "--as-of", AS_OF, "--scenario",
                            "halt+crash@sim-b", "--apply", "--unkeyed", "--url", url])  # fmt: skip
    assert r.exit_code == 1, r.output
    assert (
        "leg v1/1/0 refused: route_24h_cap: leg 102,543.60 USD with 1,000,000.00 USD used in the "
        "last 24 h makes 1,102,543.60 USD, over the rolling 24 h cap 1,050,000.00 USD on route "
        "b.spot-options.usdt" in r.stdout
    )
    assert "not pre-positioned 102,543.6 USDT from sim-b/spot to sim-b/options" in r.stdout
    assert "partial; 2 leg(s): 1 confirmed, 1 refused; moved 1,000,000.00 of 1,102,543.60 USD" in (
        r.stdout
    )
    assert "still uncovered within 60 s: " in r.stdout
    assert "USD in halt+crash@sim-b on sim-b.opt" in r.stdout
    assert _count(url, "transfer", "status = 'refused' AND attempts = 0") == 1
    assert _count(url, "plan") == 1  # not re-planned
    _chain_ok(url)


def test_prefund_bad_input_exits_2_and_records_nothing(tmp_path: Path) -> None:
    url = _store(tmp_path)
    dry_with_store = runner.invoke(app, ["prefund", "--desk", str(EXAMPLE_DESK), "--url", url])
    assert dry_with_store.exit_code == 2
    assert "--url goes with --apply" in dry_with_store.output
    unknown = runner.invoke(app, ["prefund", "--desk", str(EXAMPLE_DESK), "--scenario", "nope",
                                  "--apply", "--unkeyed", "--url", url])  # fmt: skip
    assert unknown.exit_code == 2
    assert "unknown scenario" in unknown.output
    assert _count(url, "margin_call") == _count(url, "audit_event") == 0

    # An earlier pre-funding still open (never run): a new one is refused until it is finished.
    desk = load_desk(EXAMPLE_DESK)
    at = datetime(2026, 11, 26, tzinfo=UTC)
    move = Prepositioning("b.spot-um.usdt", "sim-b.um", "sim-b", "spot", "sim-b", "um", "USDT",
                          Decimal(1000), Decimal(1000), Decimal(0))  # fmt: skip
    engine = make_engine(url)
    earlier, _, _ = open_prefund(
        engine, desk, desk.initial_portfolio(at), PrefundAdvice(60.0, (move,), Decimal(0), {}, {},
        "covered"), ["halt@sim-b"], clock=ManualClock(round(at.timestamp() * 1e9)), audit_key=None,
    )  # fmt: skip
    engine.dispose()
    blocked = runner.invoke(app, [*APPLY, "--url", url])
    assert blocked.exit_code == 2
    assert f"pre-funding {earlier.id} is still open" in blocked.output
    assert "nothing sent" in blocked.output
    assert _count(url, "margin_call") == 1
    assert _count(url, "transfer") == 0
