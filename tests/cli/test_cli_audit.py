"""`pmr audit verify|anchor|show` as an operator runs them, on a SQLite store file.

A broken chain is a finding (stdout, exit 1); bad input and a missing key are refusals (one
line on stderr, exit 2, nothing written). The Prefect Secret block test runs a real (temporary)
Prefect API, so it is the slow one here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_story import CALL, KEY, record_story
from sqlalchemy import Engine
from typer.testing import CliRunner

from core.ledger.chain import DEFAULT_KEY_ENV
from core.ledger.store import init_db, make_engine, session_scope
from flows import cli_audit
from flows.cli import app

runner = CliRunner()
SECRET = KEY.secret.decode()
NO_KEY = {"PMR_AUDIT_KEY": None}


def _create(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)  # creates the file, as `pmr db init` does
    return engine


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store at head holding the story, keyed; the SQLite file."""
    path = tmp_path / "pmr.db"
    engine = _create(path)
    with session_scope(engine) as s:
        record_story(s, KEY)
    engine.dispose()
    return path


def _run(args: list[str], path: Path, **env: str | None) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args, "--url", f"sqlite:///{path}"],
                           env={**NO_KEY, **env})  # fmt: skip
    return result.exit_code, result.output


def _sql(path: Path, statement: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement)


def test_audit_cli_default_key_variable_is_cores() -> None:
    assert cli_audit.DEFAULT_KEY_ENV == DEFAULT_KEY_ENV == "PMR_AUDIT_KEY"


def test_audit_verify_with_key_prints_verdict_head_and_key_id_never_the_key(store: Path) -> None:
    code, output = _run(["verify"], store, PMR_AUDIT_KEY=SECRET)
    assert code == 0, output
    lines = output.splitlines()
    assert lines[1] == f"key: $PMR_AUDIT_KEY (HMAC-SHA256, key id {KEY.key_id})"
    assert lines[2] == "audit chain intact: 16 events (16 keyed), head seq=16"
    with sqlite3.connect(store) as conn:
        (head_hash,) = conn.execute("SELECT hash FROM audit_event WHERE seq = 16").fetchone()
    assert lines[3] == f"head: 16:{head_hash}"
    assert lines[4].startswith("latest anchor: none recorded")
    assert SECRET not in output


def test_audit_verify_on_keyed_store_without_key_exits_2_saying_how(store: Path) -> None:
    code, output = _run(["verify"], store)
    assert code == 2
    assert output.splitlines() == [
        "error: the audit trail is keyed since seq=1: give the key ($PMR_AUDIT_KEY or "
        "--key-block), or --unkeyed to check links and order only"
    ]


def test_audit_verify_unkeyed_on_keyed_store_checks_links_only_and_warns(store: Path) -> None:
    code, output = _run(["verify", "--unkeyed"], store)
    assert code == 0, output
    assert "key: none (--unkeyed)" in output
    assert "WARNING: 16 keyed events NOT authenticated" in output
    code, output = _run(["verify", "--unkeyed"], store, PMR_AUDIT_KEY=SECRET)
    assert (code, output.strip()) == (
        2, "error: --unkeyed cannot be combined with a key ($PMR_AUDIT_KEY is set)",
    )  # fmt: skip


def test_audit_verify_with_edited_event_exits_1_naming_the_row(store: Path) -> None:
    _sql(store, "UPDATE audit_event SET payload = json_set(payload, '$.amount', '11000') "
                "WHERE seq = 8")  # fmt: skip
    code, output = _run(["verify"], store, PMR_AUDIT_KEY=SECRET)
    assert code == 1
    verdict = output.splitlines()[2]
    assert verdict.startswith("audit chain BROKEN at seq=8 (event LegConfirmed-")
    assert verdict.endswith("stored MAC does not match the event's content under the audit "
                            "key: the event was altered")  # fmt: skip
    assert output.splitlines()[3].startswith("head: 7:")


def test_audit_anchor_then_a_deleted_tail_is_named_by_verify(store: Path) -> None:
    code, output = _run(["anchor", "--by", "reconcile"], store, PMR_AUDIT_KEY=SECRET)
    assert code == 0, output
    head = output.splitlines()[2].removeprefix("anchored head ")
    assert output.splitlines()[3].startswith("anchor #1 (reconcile, ")
    assert output.splitlines()[3].endswith(") with its MAC")
    assert output.splitlines()[4] == f"keep it elsewhere: pmr audit verify --expect-head {head}"
    code, output = _run(["verify", "--expect-head", head], store, PMR_AUDIT_KEY=SECRET)
    assert code == 0, output
    assert "2 anchored heads matched" in output
    _sql(store, "DELETE FROM audit_event WHERE seq > 14")
    code, output = _run(["verify"], store, PMR_AUDIT_KEY=SECRET)
    assert code == 1
    assert (
        "BROKEN at seq=15: events seq=15..16 are missing, though anchor #1 (reconcile, " in output
    )


def test_audit_anchor_without_key_is_refused_and_records_nothing(store: Path) -> None:
    code, output = _run(["anchor"], store)
    assert code == 2
    assert output.startswith("error: no audit key: set $PMR_AUDIT_KEY")
    code, output = _run(["anchor", "--unkeyed"], store)
    assert code == 2
    assert "error: the audit trail is keyed: anchor it with the audit key" in output
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM audit_anchor").fetchone() == (0,)


def test_audit_verify_on_fresh_unkeyed_store_is_intact_at_genesis(tmp_path: Path) -> None:
    path = tmp_path / "pmr.db"
    _create(path).dispose()
    code, output = _run(["verify"], path)
    assert code == 0, output
    assert output.splitlines()[1:4] == [
        "key: none", "audit chain intact: 0 events, head seq=0", "head: 0:" + "0" * 64,
    ]  # fmt: skip
    code, output = _run(["anchor", "--unkeyed"], path)
    assert code == 0, output
    assert output.splitlines()[3].endswith(", no MAC (unkeyed)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--expect-head", "16"], "--expect-head must be SEQ:HASH"),
        (["verify", "--expect-head", "x:" + "0" * 64], "--expect-head must be SEQ:HASH"),
        (["show", "--call", " "], "--call needs a margin call id"),
        (["show", "--call", "mc-nope"], "no audit event or transfer names this margin call"),
        (["verify", "--key-env", "NOT A NAME"], "not an environment variable name"),
    ],
)
def test_audit_commands_with_bad_input_exit_2_with_one_line(
    store: Path, args: list[str], message: str
) -> None:
    code, output = _run(args, store)
    assert code == 2
    assert len(output.strip().splitlines()) == 1
    assert output.startswith("error: ")
    assert message in output


def test_audit_commands_on_missing_store_exit_2_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pmr.db"
    for args in (["verify"], ["show", "--call", CALL], ["anchor", "--unkeyed"]):
        code, output = _run(args, missing)
        assert code == 2
        assert (
            output.strip() == f"error: no store found; `pmr db init` creates one (path={missing})"
        )
    assert not missing.parent.exists()


def test_audit_show_prints_the_calls_story_and_totals(store: Path) -> None:
    code, output = _run(["show", "--call", CALL], store)
    assert code == 0, output
    assert f"margin call {CALL} (2026-03-12 UTC)" in output
    for cells in (
        ("09:30:10.095", "LegUnknown", "v1 s2.0", "sim-b:spot:USDT", "withdrawal",
         "50,000 USDT", "10,000", "unknown"),
        ("09:30:10.810", "LegConfirmed", "v2 s1.0", "sim-a:spot:USDC", "swap", "50,000 USDC",
         "480", "confirmed", "25.00"),
    ):  # fmt: skip
        row = next(line for line in output.splitlines() if cells[0] in line)
        assert [c.strip() for c in row.split("│")[1 : len(cells) + 1]] == list(cells)
    assert output.splitlines()[-1] == (
        f"{CALL}: restored after 10,900 ms; plans v1, v2; legs 4 confirmed, 1 failed, "
        "1 refused; delivered 250,000.00 USD at a cost of 25.00 USD"
    )


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API (its own SQLite home) holding the desk's Secret block."""
    from prefect.blocks.system import Secret
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect")))
        # A loaded machine takes longer than the default 30 s to start the temporary server.
        with prefect_test_harness(server_startup_timeout=180):
            Secret(value=SECRET).save("pmr-audit-key")
            yield


def test_audit_verify_with_key_from_prefect_secret_block(store: Path, prefect_api: None) -> None:
    code, output = _run(["verify", "--key-block", "pmr-audit-key"], store)
    assert code == 0, output
    assert f"key: Prefect Secret block 'pmr-audit-key' (HMAC-SHA256, key id {KEY.key_id})" in output
    assert "audit chain intact: 16 events (16 keyed)" in output
    code, output = _run(["verify", "--key-block", "no-such-block"], store)
    assert (code, output.strip()) == (
        2, "error: no Prefect Secret block of that name (block=no-such-block)",
    )  # fmt: skip
