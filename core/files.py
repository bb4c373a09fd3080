"""Read the text and JSON files pmr is given: one helper, so every command refuses bad files alike.

A desk TOML, a portfolio or params JSON, a routing problem: each can be missing, a directory,
unreadable, not UTF-8 or malformed. Each of those is the user's mistake, so it becomes one
``PmrError`` naming the file and what is wrong with it (with the byte, or the line and column),
never a traceback. ``-`` reads standard input, for commands that take a file from a pipe.

Examples
--------
>>> read_json_file("examples/route-problem.json", what="routing problem")  # doctest: +SKIP
{'policy': 'strict', ...}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core.errors import ConfigError, PmrError

__all__ = ["STDIN", "read_json_file", "read_text_file"]

STDIN = "-"


def read_text_file(
    path: str | Path, *, what: str, error: type[PmrError] = ConfigError, allow_stdin: bool = False
) -> str:
    """Return the UTF-8 text of ``path`` (``-``: standard input when ``allow_stdin``).

    Parameters
    ----------
    path
        The file to read.
    what
        What the file is, in the user's words (``"desk config"``), used in every message.
    error
        The ``PmrError`` subclass to raise: ``ConfigError`` for configuration, ``DataError``
        for input data such as a routing problem.
    allow_stdin
        Read standard input when ``path`` is ``-``.

    Raises
    ------
    PmrError
        (of class ``error``) The file is missing, a directory, unreadable or not UTF-8 text.
    """
    name = str(path)
    if allow_stdin and name == STDIN:
        try:
            data = sys.stdin.buffer.read()
        except OSError as exc:
            raise error(f"cannot read {what} from standard input: {exc.strerror}") from None
        return _decode(data, what=what, name="<stdin>", error=error)
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} file not found", file=name) from None
    except IsADirectoryError:
        raise error(f"{what} path is a directory, not a file", file=name) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"cannot read {what} file: {reason}", file=name) from None
    return _decode(data, what=what, name=name, error=error)


def _decode(data: bytes, *, what: str, name: str, error: type[PmrError]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text (byte {exc.start})", file=name) from None


def read_json_file(
    path: str | Path, *, what: str, error: type[PmrError] = ConfigError, allow_stdin: bool = False
) -> Any:
    """Read ``path`` with :func:`read_text_file` and parse it as JSON.

    Raises
    ------
    PmrError
        (of class ``error``) Everything :func:`read_text_file` refuses, or malformed JSON
        (with line and column).
    """
    text = read_text_file(path, what=what, error=error, allow_stdin=allow_stdin)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{what} is not valid JSON: {exc.msg}",
            file="<stdin>" if allow_stdin and str(path) == STDIN else str(path),
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:
        raise error(f"{what} nests JSON too deeply", file=str(path)) from None
