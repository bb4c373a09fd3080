"""Start-up time of whole ``pmr`` commands: what a user waits for before the first line.

Each command runs as the installed console script in a fresh process, several times; the
figure is the median wall time. A command's start-up is mostly imports, and imports are mostly
bytecode compilation when no ``.pyc`` exists (this machine sets PYTHONDONTWRITEBYTECODE, so
nothing is cached by running). Two modes are timed:

* ``installed``: the environment as installed (bytecode compiled at install, see
  docs/development.md);
* ``no_bytecode``: the same with an empty ``PYTHONPYCACHEPREFIX`` and no writing, so every
  module is compiled from source on every run, which is what start-up costs without it.

Targets (issue 12): ``pmr --help`` ≤ 0.4 s, ``pmr route --problem`` ≤ 1.0 s, installed.

Usage: ``uv run python benchmarks/startup.py [--runs N]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "margin_desk": ["margin", "--desk", "examples/desk.toml", "--as-of", "2026-11-27T12:00:00Z"],
    "route_problem": ["route", "--problem", "examples/route-problem.json"],
    "route_desk": [
        "route",
        "--desk",
        "examples/desk.toml",
        "--pool",
        "sim-b.um",
        "--deficit",
        "250000",
    ],
}
TARGETS_S = {"help": 0.4, "route_problem": 1.0}


def pmr_script() -> str:
    """The console script of the environment running this benchmark."""
    local = Path(sys.executable).parent / "pmr"
    found = str(local) if local.exists() else shutil.which("pmr")
    if found is None:
        raise SystemExit("the pmr console script is not installed; run `uv sync` first")
    return found


def time_command(args: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    """Median, min and max wall seconds of ``pmr args`` over ``runs`` fresh processes."""
    script = pmr_script()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([script, *args], cwd=ROOT, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"pmr {' '.join(args)} failed: {done.stderr.decode()[-400:]}")
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


def bytecode_state() -> dict[str, float]:
    """Share of the project's and of the installed packages' modules with current bytecode."""
    from importlib.util import cache_from_source

    def share(files: list[Path]) -> float:
        if not files:
            return 0.0
        ok = 0
        for f in files:
            pyc = Path(cache_from_source(str(f)))
            ok += pyc.exists() and pyc.stat().st_mtime >= f.stat().st_mtime
        return round(ok / len(files), 3)

    project = [p for d in ("core", "flows") for p in (ROOT / d).rglob("*.py")]
    site = Path(sysconfig.get_paths()["purelib"])
    deps = [
        p
        for name in ("typer", "pydantic", "numpy", "scipy", "cvxpy")
        for p in (site / name).rglob("*.py")
    ]
    return {"project_frac": share(project), "dependencies_frac": share(deps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-no-bytecode", action="store_true")
    args = parser.parse_args()

    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    result: dict[str, object] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "bytecode": bytecode_state(),
    }
    modes: dict[str, dict[str, dict[str, float]]] = {"installed": {}}
    for name, cmd in COMMANDS.items():
        modes["installed"][name] = r = time_command(cmd, args.runs, base_env)
        print(f"installed    pmr {' '.join(cmd):70s} median {r['median_s']:6.3f} s")
    if not args.skip_no_bytecode:
        modes["no_bytecode"] = {}
        with tempfile.TemporaryDirectory() as empty:
            env = {**base_env, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
            for name, cmd in COMMANDS.items():
                modes["no_bytecode"][name] = r = time_command(cmd, max(3, args.runs // 2), env)
                print(f"no bytecode  pmr {' '.join(cmd):70s} median {r['median_s']:6.3f} s")
    result.update(modes)
    result["targets"] = {
        f"{name}_le_{limit}_s": modes["installed"][name]["median_s"] <= limit
        for name, limit in TARGETS_S.items()
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
