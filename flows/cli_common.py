"""Shared pieces of the ``pmr`` command line: error handling and output consoles.

A ``PmrError`` is the user's problem (bad file, stale price, venue said no): print one line
naming what and where, exit 2, no traceback. Anything else is our bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from core.errors import PmrError

__all__ = ["EXAMPLE_DESK", "EXIT_USER_ERROR", "err_console", "fail", "handles_pmr_errors", "out"]

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USER_ERROR = 2
EXAMPLE_DESK = Path(__file__).resolve().parent.parent / "examples" / "desk.toml"

# Piped output (CI logs, `| less`) gets a wide fixed width instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)


def fail(exc: PmrError) -> typer.Exit:
    """Print ``exc`` as one error block on stderr and return the exit to raise."""
    # The message is user data (file names, TOML keys like [assets.XRP]): never rich markup.
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
    return typer.Exit(EXIT_USER_ERROR)


def handles_pmr_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a ``PmrError`` raised by a command into a clean message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except PmrError as exc:
            raise fail(exc) from None

    return wrapper
