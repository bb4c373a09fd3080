"""The import arrows of ``core`` point one way (STYLE rule 1, DESIGN §2).

``core.params`` sits below the config, the margin models and the venues; ``core.config`` never
loads ``core.margin`` (not even a package ``__init__`` at import time), ``core.venues`` never
loads ``core.margin``, ``core.routing`` or ``core.ledger`` (the simulator included: its option
pricing comes from ``core.pricing``), and nothing in ``core`` loads Prefect. Each check imports
in a fresh interpreter, so one test's imports cannot hide another's.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import core

_PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_after(modules: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(modules)],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout))


# Scripts, not modules: ``python -m`` entry points and Alembic's env.py (it runs a migration
# when imported, and only Alembic imports it).
_SCRIPTS = ("__main__", "core.ledger.migrations.env")


def _core_modules(package: str) -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
    return sorted(
        n
        for n in names
        if (n == package or n.startswith(package + ".") or package == "core")
        and not n.endswith(_SCRIPTS)
    )


def _under(loaded: set[str], package: str) -> list[str]:
    return sorted(m for m in loaded if m == package or m.startswith(package + "."))


def test_core_params_with_import_loads_no_other_core_module() -> None:
    loaded = _loaded_after(["core.params"])
    assert _under(loaded, "core") == ["core", "core.params"]


def test_core_config_with_import_never_loads_margin_routing_or_ledger() -> None:
    loaded = _loaded_after(["core.config"])
    for package in ("core.margin", "core.routing", "core.ledger", "core.venues.sim"):
        assert _under(loaded, package) == [], package


def test_every_venue_module_with_import_never_loads_margin_routing_or_ledger() -> None:
    modules = _core_modules("core.venues")
    assert "core.venues.state" in modules
    assert "core.venues.sim.options" in modules
    loaded = _loaded_after(modules)
    for package in ("core.margin", "core.routing", "core.ledger", "core.execution"):
        assert _under(loaded, package) == [], package


@pytest.mark.parametrize("package", ["core.margin", "core.routing", "core.stress"])
def test_domain_packages_with_import_never_load_venues(package: str) -> None:
    loaded = _loaded_after(_core_modules(package))
    assert _under(loaded, "core.venues.ccxt_venue") == []
    assert _under(loaded, "core.venues.sim") == []


def test_every_core_module_with_import_never_loads_prefect() -> None:
    loaded = _loaded_after(_core_modules("core"))
    assert _under(loaded, "prefect") == []
