"""Every pmr deployment of one desk, built and served (DESIGN §9; ``pmr serve`` runs this).

:func:`build_deployments` gives four ``RunnerDeployment`` s, named ``<flow>/<name>`` in the UI:

==================================  ===========================================================
``reconcile/pmr-reconcile``         every 5 min: venues vs ledger, drift events, audit head
``stress-test/pmr-stress-test``     hourly: the scenario library, artifacts, breach events
``monitor/pmr-monitor``             every 10 min, each run cycling every 15 s for 10 min (one
                                    long-lived run at a time: the deployment's concurrency
                                    limit is 1), fast path on
``margin-call/pmr-margin-call``     no schedule: triggered by ``pmr.margin.call`` (parameters
                                    from ``{{ event.payload.* }}``), or run by hand from the UI
==================================  ===========================================================

Every deployment gets the desk file's absolute path as ``desk_file``: a served run starts a
fresh interpreter in this host's working directory, and a worker on another host needs the
same path (``deployments/prefect.yaml`` is that path for work pools). The margin-call trigger
matches resources ``pmr.pool.*`` and reads ``desk_file`` and ``margin_call_id`` from the
event's payload (the keys ``flows.events.EVENT_PAYLOAD_KEYS`` guarantees); a bare
``{{ event.id }}`` would fail the action silently (DESIGN §9), so only payload keys are used.

Run: ``uv run python deployments/serve.py --desk examples/desk.toml`` against the server in
``PREFECT_API_URL`` (``pmr serve`` starts one when none is configured).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "MARGIN_CALL_EVENT",
    "MONITOR_RUN_S",
    "RECONCILE_EVERY_S",
    "STRESS_EVERY_S",
    "TRIGGER_PARAMETERS",
    "build_deployments",
    "main",
]

RECONCILE_EVERY_S = 300
STRESS_EVERY_S = 3600
MONITOR_RUN_S = 600  # each monitor run cycles this long; a new one is scheduled as it ends
MONITOR_PERIOD_S = 15.0
MARGIN_CALL_EVENT = "pmr.margin.call"
#: The margin-call deployment's parameters, templated from the triggering event's payload.
TRIGGER_PARAMETERS: dict[str, str] = {
    "desk_file": "{{ event.payload.desk_file }}",
    "margin_call_id": "{{ event.payload.margin_call_id }}",
    "trigger": "event",
}


def build_deployments(
    desk_file: str | Path, *, monitor_period_s: float = MONITOR_PERIOD_S
) -> list[RunnerDeployment]:
    """The desk's four deployments (see the module docstring), ready for ``serve``."""
    from prefect.events import DeploymentEventTrigger

    from flows.margin_call_flow import margin_call_flow
    from flows.monitor_flow import monitor_flow
    from flows.reconcile_flow import reconcile_flow
    from flows.stress_flow import stress_test_flow

    desk = str(Path(desk_file).resolve())
    tags = ["pmr"]
    built = [
        reconcile_flow.to_deployment(
            "pmr-reconcile",
            interval=timedelta(seconds=RECONCILE_EVERY_S),
            parameters={"desk_file": desk},
            concurrency_limit=1,
            tags=tags,
            description="Snapshot every venue, compare with the ledger, flag drift.",
        ),
        stress_test_flow.to_deployment(
            "pmr-stress-test",
            interval=timedelta(seconds=STRESS_EVERY_S),
            parameters={"desk_file": desk},
            concurrency_limit=1,
            tags=tags,
            description="Stress the desk: scenario library, time-to-cover, pre-funding advice.",
        ),
        monitor_flow.to_deployment(
            "pmr-monitor",
            interval=timedelta(seconds=MONITOR_RUN_S),
            parameters={
                "desk_file": desk,
                "cycles": 0,
                "period_s": monitor_period_s,
                "duration_s": float(MONITOR_RUN_S),
                "fast_path": True,
            },
            concurrency_limit=1,
            tags=tags,
            description="Re-price every pool; on a breach record the call and cure it at once.",
        ),
        margin_call_flow.to_deployment(
            "pmr-margin-call",
            parameters={"desk_file": desk},
            triggers=[
                DeploymentEventTrigger(
                    name="pmr-margin-call-on-breach",
                    expect={MARGIN_CALL_EVENT},
                    match={"prefect.resource.id": "pmr.pool.*"},
                    parameters=dict(TRIGGER_PARAMETERS),
                )
            ],
            tags=tags,
            description="Plan and execute a margin call; a call already handled is a no-op.",
        ),
    ]
    # ``to_deployment`` is sync-compatible: called from sync code it returns the deployment.
    return [_built(d) for d in built]


def _built(d: object) -> RunnerDeployment:
    from prefect.deployments.runner import RunnerDeployment

    if not isinstance(d, RunnerDeployment):
        raise TypeError(
            f"to_deployment gave {type(d).__name__}; call build_deployments from sync code"
        )
    return d


def main(argv: list[str] | None = None) -> None:
    """Bootstrap (concurrency limits, Secret blocks) then serve until Ctrl-C."""
    from prefect import serve

    from core.config import load_desk
    from flows.bootstrap import bootstrap

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--desk", required=True, help="the desk's TOML file")
    ap.add_argument("--limit", type=int, default=None, help="at most this many runs at once")
    args = ap.parse_args(argv)
    report = bootstrap(load_desk(Path(args.desk)))
    for line in report.lines():
        print(line)
    options: dict[str, Any] = {"print_starting_message": True}
    if args.limit is not None:
        options["limit"] = args.limit
    serve(*build_deployments(args.desk), **options)


if __name__ == "__main__":
    main()
