"""``deployments/serve.py``: names, schedules, limits, and a trigger that can always fire.

A trigger template naming a payload key the emitter does not send, or a parameter the flow does
not take, fails the automation's action silently at run time (DESIGN §9): this test is where
that mistake is caught.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from flows.events import EVENT_PAYLOAD_KEYS, MARGIN_CALL, pool_resource
from flows.margin_call_flow import margin_call_flow
from flows.monitor_flow import monitor_flow
from flows.reconcile_flow import reconcile_flow
from flows.stress_flow import stress_test_flow

ROOT = Path(__file__).resolve().parents[2]
DESK = ROOT / "examples" / "desk.toml"


def _serve_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pmr_serve", ROOT / "deployments" / "serve.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def serve() -> ModuleType:
    return _serve_module()


def test_build_deployments_names_schedules_and_limits(serve: ModuleType) -> None:
    deps = {d.name: d for d in serve.build_deployments(DESK)}
    assert sorted(deps) == ["pmr-margin-call", "pmr-monitor", "pmr-reconcile", "pmr-stress-test"]
    every = {
        name: [s.schedule.interval.total_seconds() for s in d.schedules] for name, d in deps.items()
    }
    assert every == {
        "pmr-reconcile": [300.0],
        "pmr-stress-test": [3600.0],
        "pmr-monitor": [600.0],
        "pmr-margin-call": [],
    }
    for name in ("pmr-reconcile", "pmr-stress-test", "pmr-monitor"):
        assert deps[name].concurrency_limit == 1, name
    assert deps["pmr-monitor"].parameters["duration_s"] == 600.0
    assert deps["pmr-monitor"].parameters["cycles"] == 0
    for d in deps.values():
        assert d.parameters["desk_file"] == str(DESK.resolve())


def test_every_deployment_parameter_is_one_its_flow_accepts(serve: ModuleType) -> None:
    flows = {
        "pmr-reconcile": reconcile_flow,
        "pmr-stress-test": stress_test_flow,
        "pmr-monitor": monitor_flow,
        "pmr-margin-call": margin_call_flow,
    }
    for d in serve.build_deployments(DESK):
        accepted = set(inspect.signature(flows[d.name].fn).parameters)
        assert set(d.parameters) <= accepted, d.name


def test_margin_call_trigger_templates_only_keys_the_monitor_always_sends(
    serve: ModuleType,
) -> None:
    (mc,) = [d for d in serve.build_deployments(DESK) if d.name == "pmr-margin-call"]
    (trigger,) = mc.triggers
    assert trigger.expect == {MARGIN_CALL}
    # The monitor's resource for a pool matches the trigger's pattern.
    pattern = trigger.match.root["prefect.resource.id"]
    resource = pool_resource("sim-b", "sim-b.opt")["prefect.resource.id"]
    assert re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), resource)
    accepted = set(inspect.signature(margin_call_flow.fn).parameters)
    sent = set(EVENT_PAYLOAD_KEYS[MARGIN_CALL])
    for param, template in trigger.parameters.items():
        assert param in accepted, param
        for key in re.findall(r"\{\{\s*event\.payload\.(\w+)\s*\}\}", str(template)):
            assert key in sent, f"{param} reads payload key {key!r}, which is not always sent"
        # Only payload keys: a bare {{ event.id }} fails the action silently (DESIGN §9).
        assert "{{" not in str(template) or "event.payload." in str(template), template
    assert trigger.parameters["trigger"] == "event"


def test_prefect_yaml_declares_the_deployments_serve_builds(serve: ModuleType) -> None:
    import yaml

    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    built = {d.name: d for d in serve.build_deployments(DESK)}
    assert sorted(declared) == sorted(built)
    for name, d in declared.items():
        b = built[name]
        module, _, attr = d["entrypoint"].partition(":")
        flow_obj = getattr(
            importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr
        )
        assert flow_obj.name == b.flow_name, name
        every = [s["interval"] for s in d.get("schedules", [])]
        assert every == [s.schedule.interval.total_seconds() for s in b.schedules], name
        assert d.get("concurrency_limit") == b.concurrency_limit, name
        params = {k: v for k, v in d["parameters"].items() if k != "desk_file"}
        assert params == {k: v for k, v in b.parameters.items() if k != "desk_file"}, name
        assert d["work_pool"]["name"] == "pmr-process"
    (trigger,) = declared["pmr-margin-call"]["triggers"]
    (built_trigger,) = built["pmr-margin-call"].triggers
    assert set(trigger["expect"]) == built_trigger.expect
    assert trigger["match"] == dict(built_trigger.match.root)
    assert trigger["parameters"] == built_trigger.parameters
