"""``pmr margin-call`` and ``pmr execute`` end to end on the example desk's simulated venues
and a real SQLite store: a shocked pool is detected, planned, executed and verified; a pool
above its call level is left alone; a dry run records nothing; recorded plans are run and
resumed; bad input exits 2 with one line and sends nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session
from typer.testing import CliRunner

from core.clock import ManualClock
from core.config import load_desk
from core.execution.cure import DeskCure
from core.execution.margin_call import detect, open_call, plan_call
from core.ledger.audit_log import verify_audit_chain
from core.ledger.plans import RecordedPlan
from core.ledger.store import init_db, make_engine, session_scope
from core.ledger.transfers import intent_for_leg, record_transfer_intent, record_transfer_result
from core.ledger.vocab import TransferState
from core.venues.factory import build_desk_venues
from flows.cli import app
from flows.cli_execute import parse_plan_ref

runner = CliRunner()
EXAMPLE_DESK = Path(__file__).resolve().parents[2] / "examples" / "desk.toml"
SHOCK = "ETH=-0.26,BTC=0.08"
AS_OF = "2026-11-27T12:00:00Z"
AS_OF_NS = 1_795_780_800_000_000_000


def _store(tmp_path: Path) -> str:
    path = tmp_path / "pmr.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    engine.dispose()
    return f"sqlite:///{path}"


def _pmr(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--unkeyed"])
    return result.exit_code, result.output


def _count(url: str, table: str, where: str = "1=1") -> int:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])


def _chain_ok(url: str) -> None:
    engine = make_engine(url)
    with Session(engine) as s:
        assert verify_audit_chain(s).ok
    engine.dispose()


def _open_call(url: str) -> RecordedPlan:
    """A margin call on sim-b.opt opened and planned through the library, not executed."""
    desk = load_desk(EXAMPLE_DESK)
    engine = make_engine(url)
    clock = ManualClock(AS_OF_NS)
    with build_desk_venues(desk, clock) as dv:
        dv.warm_up()
        for e in dv.engines.values():
            e.prices.apply_scenario({"ETH": -0.26, "BTC": 0.08})
        cure = DeskCure(desk, dv.venues, clock, engine=engine)
        reports, pf, due = detect(cure)
        d = next(x for x in due if x.pool_id == "sim-b.opt")
        call, _ = open_call(engine, cure, d, clock=clock, audit_key=None)
        recorded, _ = plan_call(engine, cure, call, reports, pf, clock=clock, audit_key=None)
    engine.dispose()
    return recorded


def test_margin_call_with_a_shock_detects_plans_executes_and_cures(tmp_path: Path) -> None:
    url = _store(tmp_path)
    code, out = _pmr("margin-call", "--desk", str(EXAMPLE_DESK), "--pool", "sim-b.opt",
                     "--shock", SHOCK, "--as-of", AS_OF, "--url", url)  # fmt: skip
    assert code == 0, out
    assert "pool sim-b.opt: ratio 1.4083 at or below its call level 1.6: margin call" in out
    assert "b.spot-options.usdt" in out
    assert "leg v1/0/0 internal 561141.54 USDT spot->options on sim-b: sent in" in out
    assert "leg v1/0/0 confirmed (venue id 100000001)" in out
    assert "verify: sim-b.opt ratio 2.0400 vs target 2.0400 -> cured" in out
    assert (
        "cured; plan v1; 1 leg(s): 1 confirmed; ratio 2.0400 vs target 2.0400, restored: yes" in out
    )
    assert _count(url, "transfer", "status = 'confirmed' AND attempts = 1") == 1
    assert _count(url, "margin_call", "status = 'cured'") == 1
    _chain_ok(url)


def test_margin_call_on_a_pool_above_its_call_level_says_so_and_records_nothing(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path)
    code, out = _pmr("margin-call", "--desk", str(EXAMPLE_DESK), "--pool", "sim-b.opt",
                     "--as-of", AS_OF, "--url", url)  # fmt: skip
    assert code == 0, out
    assert "is above its call level 1.6: no margin call" in out
    assert _count(url, "margin_call") == _count(url, "transfer") == 0


def test_margin_call_dry_run_plans_and_prints_but_sends_and_records_nothing(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path)
    code, out = _pmr("margin-call", "--desk", str(EXAMPLE_DESK), "--pool", "sim-a.pm",
                     "--shock", SHOCK, "--as-of", AS_OF, "--url", url, "--dry-run")  # fmt: skip
    assert code == 0, out
    assert "Plan (dry run)" in out
    assert "a.margin.doge-usdt" in out
    assert "Dry run: nothing was sent or recorded." in out
    assert "sent in" not in out
    for table in ("margin_call", "plan", "transfer", "audit_event"):
        assert _count(url, table) == 0, table


def test_execute_runs_a_recorded_plan_then_refuses_the_cured_call(tmp_path: Path) -> None:
    url = _store(tmp_path)
    recorded = _open_call(url)
    ref = f"{recorded.margin_call_id}:1"
    args = ("--desk", str(EXAMPLE_DESK), "--shock", SHOCK, "--as-of", AS_OF, "--url", url)
    code, out = _pmr("execute", "--plan", ref, *args)
    assert code == 0, out
    assert f"call {recorded.margin_call_id}\n" in out
    assert "\ncured; plan v1; 1 leg(s): 1 confirmed" in out
    assert _count(url, "transfer", "status = 'confirmed'") == 1
    code, out = _pmr("execute", "--call", recorded.margin_call_id, *args)
    assert code == 2
    assert "is cured: its plan is not executed; nothing sent" in out
    assert _count(url, "transfer") == 1
    _chain_ok(url)


def test_execute_resume_finishes_a_leg_a_crashed_run_left_with_an_attempt(
    tmp_path: Path,
) -> None:
    url = _store(tmp_path)
    recorded = _open_call(url)
    engine = make_engine(url)
    intent = intent_for_leg(recorded, 0, 0)
    at = ManualClock(AS_OF_NS).now()
    with session_scope(engine) as s:  # committed attempt, then the process died before sending
        record_transfer_intent(s, intent, at=at)
        record_transfer_result(s, intent.key, TransferState.PENDING, at=at, sent_at=at)
    engine.dispose()
    args = ("--desk", str(EXAMPLE_DESK), "--shock", SHOCK, "--as-of", AS_OF, "--url", url)
    code, out = _pmr("execute", "--resume", *args)
    assert code == 0, out
    assert "proven absent after the lookup window; resending under the same key" in out
    assert _count(url, "transfer", "status = 'confirmed' AND attempts = 2") == 1
    code, out = _pmr("execute", "--resume", *args)
    assert code == 0, out
    assert "nothing to resume: every leg in the store is final" in out


def test_execute_refuses_unknown_calls_versions_and_tampered_rows(tmp_path: Path) -> None:
    url = _store(tmp_path)
    recorded = _open_call(url)
    args = ("--desk", str(EXAMPLE_DESK), "--url", url)
    result = runner.invoke(app, ["execute", "--plan", "mc-nope", *args, "--unkeyed"])
    assert result.exit_code == 2
    assert result.stderr == "error: no margin call 'mc-nope' in the store; nothing sent\n"
    code, out = _pmr("execute", "--plan", f"{recorded.margin_call_id}:7", *args)
    assert code == 2
    assert "no plan version 7" in out
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE plan_leg SET amount = 9000000 WHERE plan_id = :p"),
                     {"p": recorded.plan_id})  # fmt: skip
    engine.dispose()
    code, out = _pmr("execute", "--plan", recorded.margin_call_id, *args)
    assert code == 2
    assert "differs from its step's" in out
    assert "tampered row" in out
    assert _count(url, "transfer") == 0


def test_bad_options_exit_2_before_anything_is_sent(tmp_path: Path) -> None:
    url = _store(tmp_path)
    desk = ("--desk", str(EXAMPLE_DESK), "--url", url)
    cases = [
        (("margin-call", "--pool", "nope", *desk), "unknown pool 'nope'; the desk's pools:"),
        (("margin-call", "--pool", "sim-b.opt", "--shock", "ET=-0.3", *desk), "shock moves ET"),
        (("execute", *desk), "give one of --plan or --resume"),
        (("execute", "--plan", "mc-x:0", *desk), "--plan version must be a whole number >= 1"),
        (("execute", "--resume", "--plan", "mc-x", *desk), "cannot be combined"),
        (
            (
                "execute",
                "--resume",
                "--desk",
                str(EXAMPLE_DESK),
                "--url",
                f"sqlite:///{tmp_path / 'none.db'}",
            ),
            "no store found",
        ),
    ]
    for args, message in cases:
        code, out = _pmr(*args)
        assert code == 2, (args, out)
        assert message in out, (args, out)
    assert _count(url, "transfer") == _count(url, "margin_call") == 0


def test_parse_plan_ref() -> None:
    assert parse_plan_ref("mc-a:3") == ("mc-a", 3)
    assert parse_plan_ref(" mc-a ") == ("mc-a", None)
