"""core.files: the one reader every command uses; each bad file is one error naming it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError, DataError
from core.files import read_json_file, read_text_file


def test_read_text_file_with_utf8_returns_the_text(tmp_path: Path) -> None:
    f = tmp_path / "desk.toml"
    f.write_bytes('name = "Nørdwind"\n'.encode())
    assert read_text_file(f, what="desk config") == 'name = "Nørdwind"\n'


def test_read_text_file_with_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^desk config file not found \(file=.*nope\.toml\)$"):
        read_text_file(tmp_path / "nope.toml", what="desk config")


def test_read_text_file_with_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"portfolio path is a directory, not a file"):
        read_text_file(tmp_path, what="portfolio")


def test_read_text_file_with_non_utf8_bytes_names_the_byte(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_bytes(b'{"a": "caf\xe9"}')  # Latin-1 é at byte 10
    with pytest.raises(ConfigError, match=r"portfolio is not UTF-8 text \(byte 10\)"):
        read_text_file(f, what="portfolio")


def test_read_json_file_with_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "problem.json"
    f.write_text('{\n  "calls": [1,,2]\n}\n')
    with pytest.raises(DataError) as err:
        read_json_file(f, what="routing problem", error=DataError)
    msg = str(err.value)
    assert msg.startswith("routing problem is not valid JSON: Expecting value")
    assert "line=2" in msg
    assert "column=15" in msg  # the second comma


def test_read_json_file_with_dash_reads_stdin_when_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"policy": "cost"}')))
    assert read_json_file("-", what="routing problem", allow_stdin=True) == {"policy": "cost"}


def test_read_json_file_with_dash_is_a_file_name_unless_stdin_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"portfolio file not found \(file=-\)"):
        read_json_file("-", what="portfolio")


def test_read_json_file_with_non_utf8_stdin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff{}")))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0\) \(file=<stdin>\)"):
        read_json_file("-", what="routing problem", error=DataError, allow_stdin=True)
