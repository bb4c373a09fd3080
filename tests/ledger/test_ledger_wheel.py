"""The built wheel carries what the store needs at run time: migrations and the SQL files."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_wheel_with_store_files_ships_migrations_views_and_queries(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH; the wheel is built with `uv build`")
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("pmr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql in ("schema.sql", "views.sql"):
        assert f"core/ledger/sql/{sql}" in names
    assert any(n.startswith("core/ledger/sql/queries/") and n.endswith(".sql") for n in names)
    assert "core/ledger/migrations/versions/0001_baseline.py" in names
    assert "core/ledger/migrations/script.py.mako" in names
