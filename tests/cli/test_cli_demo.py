"""`pmr demo`: the whole story (reconcile, stress-test, a sharp move, the monitor, the margin-call
flow with a lost answer found by lookup, the audit trail) offline, on the example desk."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.config import load_desk, parse_desk
from core.margin import DeskLevel, VenueBand, evaluate_pool
from core.margin.levels import margin_calls_due
from flows.cli import app
from flows.demo import (
    DEFAULT_SHOCK,
    PREFECT_DEPLOYMENTS,
    PREFECT_STEPS,
    DemoStory,
    demo_store,
    parse_shock,
    run_story,
)

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "desk.toml"
AS_OF = "2026-11-27T12:00:00Z"


@pytest.fixture(scope="module")
def as_of_output() -> str:
    """One `pmr demo --as-of` run, shared by the tests that read its output."""
    result = runner.invoke(app, ["demo", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # quiet: no log line, no warning, no traceback
    return result.stdout


@pytest.fixture(scope="module")
def story() -> Iterator[DemoStory]:
    """The story as data, on a store of its own (no printing)."""
    desk = load_desk(EXAMPLE)
    with demo_store({}) as (url, kept):
        yield run_story(
            desk, "examples/desk.toml", shock=parse_shock(DEFAULT_SHOCK), deadline_s=60.0,
            at=datetime(2026, 11, 27, 12, tzinfo=UTC), store_url=url, kept_url=kept,
            as_of_fixed=True,
        )  # fmt: skip


def test_story_with_default_shock_cures_both_calls_and_books_each_leg_once(
    story: DemoStory,
) -> None:
    assert story.baseline.baseline == ("sim-a", "sim-b")
    assert story.baseline.drifts == ()
    assert [d.pool_id for d in story.after.due] == ["sim-a.pm", "sim-b.opt"]
    assert [c.report.call_status for c in story.calls] == ["cured", "cured"]
    for c in story.calls:
        v = c.report.verification
        assert v is not None
        assert v.ratio is not None
        assert v.ratio >= c.target_ratio
        assert c.report.versions == (1,)  # v1 was the real plan: no re-plan was needed
        assert c.story.outcome == "restored"
    # the injected timeout: one leg went unknown and was resolved by lookup, not resent
    first = story.calls[0]
    assert first.fault is not None
    assert first.fault.startswith("sim-a applies the next transfer")
    events = [line.event for line in first.story.lines]
    assert events.count("LegUnknown") == 1
    assert events.count("LegResolved") == 1
    assert sum(story.booked.values()) == story.legs_confirmed == story.sends == 3
    assert story.booked == {"sim-a": 2, "sim-b": 1}
    # the second reconciliation compares every balance and finds nothing booked twice
    assert story.final is not None
    assert story.final.compared == 16
    assert story.final.drifts == ()
    assert story.final.in_flight == ()
    assert story.chain is not None
    assert story.chain.ok
    assert story.chain.checked == 13
    assert story.restored is not None
    assert all(m.ratio is not None and m.ratio >= Decimal("2.04") for m in story.restored.marks)


def test_story_stress_summary_names_the_options_pool_as_the_worst(story: DemoStory) -> None:
    s = story.stress
    assert (s.pools, s.scenarios, s.at_or_below_call, s.liquidation) == (3, 38, 27, 21)
    w = s.worst[0]
    assert (w.pool_id, w.scenario, w.desk_level) == (
        "sim-b.opt", "joint-btc-50%-vol+100%", "liquidation",
    )  # fmt: skip
    assert w.ratio is not None
    assert round(w.ratio, 2) == Decimal("-0.91")
    assert w.uncovered_usd == Decimal("159655.84")
    assert s.weak == ("sim-b.opt", "sim-a.pm")
    assert s.advice is not None
    assert s.advice.status == "partial"


def test_demo_prints_each_step_of_the_story(as_of_output: str) -> None:
    out = as_of_output
    for line in (
        "1. reconcile: sim-a, sim-b snapshotted as the ledger's baseline, 0 drifts",
        "2. stress-test: 3 pools x 38 scenarios: 27 of 114 at or below call, 21 at liquidation",
        "     sim-b.opt   -0.91  liquidation joint-btc-50%-vol+100% (159,656 USD not coverable",
        "3. move: ETH -26%, BTC +8% on every simulated venue",
        "     sim-a.pm      4.97    0.55   1.6  margin call mc-20261127-120000100-…",
        "     sim-b.um     10.58   34.82   1.6  -",
        "   plan v1 (strict; cvxpy + HiGHS): optimal, cost 1,200.00 USD, uncovered 0 USD",
        "        0  a.margin.doge-usdt           swap         750,000    373,800  1,200.00   0.5",
        "   fault: sim-a applies the next transfer, then its answer is lost (timeout)",
        "     leg v1/1/0 sent: no answer (unknown): looking it up",
        "     leg v1/1/0 confirmed by lookup (venue id 100000001)",
        "   sim-a.pm: cured, ratio 0.55 -> 2.04 (target 2.04)",
        "   sim-b.opt: cured, ratio 1.41 -> 2.04 (target 2.04)",
        "   reconcile: 16 balances compared, 0 drifts, 0 legs in flight",
        "   venues booked 3 writes (sim-a 2, sim-b 1) for 3 legs confirmed; 3 requests sent, "
        "none twice",
        "7. audit chain intact: 13 events",
        "> LegUnknown > LegResolved > RatioRestored",
    ):
        assert line in out, line
    assert out.index("1. reconcile") < out.index("2. stress") < out.index("3. move")
    assert out.index("3. move") < out.index("4. monitor") < out.index("5. margin-call flow")
    assert out.index("5. margin-call flow") < out.index("6. after") < out.index("7. audit")
    assert len(out.splitlines()) <= 60  # one or two screens


def test_demo_points_at_the_deployments_artifacts_and_events_that_exist(
    as_of_output: str,
) -> None:
    assert "Prefect UI: `uv run pmr demo --serve` runs these steps as deployments" in as_of_output
    serve = (REPO / "deployments" / "serve.py").read_text()
    flows = "".join(p.read_text() for p in (REPO / "flows").glob("*_flow.py"))
    events = (REPO / "flows" / "events.py").read_text()
    for deployment, (_, shows) in zip(PREFECT_DEPLOYMENTS, PREFECT_STEPS, strict=True):
        assert f" {deployment} " in as_of_output
        flow, name = deployment.split("/")
        assert f'@flow(name="{flow}"' in flows
        assert f'"{name}"' in serve
        artifacts, _, emitted = shows.partition("; ")
        for key in artifacts.split(", "):
            assert f'key="{key}"' in flows, key
        for event in re.findall(r"pmr\.[a-z]+\.[a-z]+", emitted):
            assert f'"{event}"' in events, event


def test_demo_with_as_of_prints_the_same_bytes_twice_and_no_solve_time(
    as_of_output: str,
) -> None:
    second = runner.invoke(app, ["demo", "--as-of", AS_OF])
    assert second.exit_code == 0, second.output
    assert second.stdout == as_of_output
    assert "valued at 2026-11-27T12:00:00+00:00 (--as-of)" in as_of_output
    assert "HiGHS in" not in as_of_output
    assert " ms" not in as_of_output  # measured latencies are left out too


def test_demo_without_as_of_keeps_its_store_for_pmr_audit_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PMR_HOME", str(tmp_path))
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert re.search(r"cvxpy \+ HiGHS in \d+ ms", result.stdout)
    store = f"sqlite:///{tmp_path.resolve() / 'demo' / 'pmr.db'}"
    assert f"store: {store}" in result.stdout
    m = re.search(
        r"one call's story: uv run pmr audit show --url (\S+) --call (mc-\S+)", result.stdout
    )
    assert m is not None
    assert m.group(1) == store
    shown = runner.invoke(app, ["audit", "show", "--url", m.group(1), "--call", m.group(2)])
    assert shown.exit_code == 0, shown.output
    assert "LegResolved" in shown.stdout
    assert "restored after" in shown.stdout


def test_demo_store_replaces_the_last_run_and_leaves_the_desk_store_alone(tmp_path: Path) -> None:
    (tmp_path / "pmr.db").write_text("the desk's own store")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "pmr.db").write_text("last run")
    with demo_store({"PMR_HOME": str(tmp_path)}) as (url, kept):
        assert url == kept == f"sqlite:///{tmp_path.resolve() / 'demo' / 'pmr.db'}"
        assert not (tmp_path / "demo" / "pmr.db").exists()
    assert (tmp_path / "pmr.db").read_text() == "the desk's own store"


def test_demo_store_without_pmr_home_is_removed_at_exit() -> None:
    with demo_store({}) as (url, kept):
        folder = Path(url.removeprefix("sqlite:///")).parent
        assert kept is None
        assert folder.is_dir()
    assert not folder.exists()


def test_demo_dry_run_stops_after_the_plan() -> None:
    result = runner.invoke(app, ["demo", "--dry-run", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert "margin call (dry run: not recorded)" in result.stdout
    assert "5. plan (dry run): optimal" in result.stdout
    assert "Dry run: no margin call was recorded and nothing was sent." in result.stdout
    assert "margin-call flow" not in result.stdout


def test_demo_with_mild_shock_says_nothing_to_cure() -> None:
    result = runner.invoke(app, ["demo", "--shock", "ETH=-0.05", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert "no pool falls to its call level under this move: nothing to cure" in result.stdout
    assert "5. margin-call flow" not in result.stdout


def test_demo_with_malformed_shock_exits_2() -> None:
    result = runner.invoke(app, ["demo", "--shock", "ETH=minus-ten"])
    assert result.exit_code == 2
    assert "ASSET=MOVE" in result.output


def test_parse_shock_with_several_assets() -> None:
    assert parse_shock("eth=-0.25, BTC=0.1") == {"ETH": -0.25, "BTC": 0.1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shock", "ET=-0.3"], "shock moves ET, which the desk does not price; assets it prices"),
        (["--shock", "ETH=-0.3,XRP=0.1"], "shock moves XRP"),
        (["--shock", "ETH=-0.3,eth=-0.1"], "shock moves ETH twice"),
        (["--shock", "ETH=nan"], "price move must be in (-100 %, +1000 %)"),
        (["--shock", "ETH=-1"], "price move must be in (-100 %, +1000 %)"),
        (["--deadline", "0"], "--deadline must be > 0"),
        (["--deadline", "inf"], "--deadline must be a finite number"),
        (["--as-of", "2026-11-27"], "--as-of needs a timezone"),
        (["--desk", "."], "desk config path is a directory"),
    ],
)
def test_demo_with_bad_option_exits_2_before_printing_anything(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PMR_HOME", str(tmp_path))
    result = runner.invoke(app, ["demo", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""  # not even the header
    assert "Traceback" not in result.output
    assert not (tmp_path / "demo").exists()  # no store made


def test_demo_with_as_of_values_options_at_that_instant() -> None:
    # option time value shrinks as expiry nears, so the option pool's numbers move with as-of
    early = runner.invoke(app, ["demo", "--dry-run", "--as-of", "2026-06-01T00:00:00Z"])
    late = runner.invoke(app, ["demo", "--dry-run", "--as-of", "2027-03-01T00:00:00Z"])
    assert early.exit_code == 0, early.output
    assert late.exit_code == 0, late.output
    opt = re.compile(r"^ +sim-b\.opt +(\S+) +(\S+) +1\.6 ", re.M)
    e, l_ = opt.search(early.stdout), opt.search(late.stdout)
    assert e is not None
    assert l_ is not None
    assert e.groups() != l_.groups()


def test_demo_with_as_of_after_an_option_expiry_exits_2_naming_the_position() -> None:
    result = runner.invoke(app, ["demo", "--as-of", "2027-04-01T00:00:00Z"])
    assert result.exit_code == 2
    assert "positions[6].symbol: option 'BTC-270326-100000-C' expired" in result.stderr
    assert result.stdout == ""


def test_breached_pools_follow_the_desk_level_even_when_the_venue_band_is_normal() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    # sim-b.opt sits at a ratio of 1.99: normal for the venue (> 1.5); a desk calling at 2.1
    # raises a margin call now, before the venue restricts anything.
    data["pools"][2]["thresholds"] = {"warn": 2.5, "call": 2.1, "reduce_only": 1.6,
                                      "liquidation": 1.3, "target": 2.5}  # fmt: skip
    desk = parse_desk(data)
    state = desk.initial_portfolio(datetime(2026, 11, 27, 12, tzinfo=UTC))
    reports = {p.id: evaluate_pool(desk, p.id, state) for p in desk.pools}
    opt = reports["sim-b.opt"]
    assert (opt.venue_band, opt.desk_level) == (VenueBand.NORMAL, DeskLevel.CALL)
    assert [due.pool_id for due in margin_calls_due(desk, reports)] == ["sim-b.opt"]
