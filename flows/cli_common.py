"""Shared pieces of the ``pmr`` command line: error handling, output consoles, option checks.

A ``PmrError`` is the user's problem (bad file, stale price, venue said no): print one line
naming what and where, exit 2, no traceback. Anything else is our bug and keeps its traceback.

Every command checks all of its options before it prints or computes anything, with the helpers
here, so the same mistake reads the same way everywhere:

* :func:`parse_as_of` / :func:`as_of_or_now`: the ``--as-of`` instant (ISO-8601 with a
  timezone, normalised to UTC); with it, a command's output does not depend on the wall clock;
* :func:`require_one_of` and :func:`refuse_option`: combinations that mean nothing;
* :func:`check_number`, :func:`check_money`, :func:`check_port`: numbers that cannot be right
  (NaN, infinite, out of range, money at or above ``core.domain.MAX_ABS_AMOUNT``).

Start-up: ``pmr --help`` imports this module, so it imports nothing heavy. The rich consoles
are created on first use, and pydantic, numpy and the engines load inside the commands.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer

from core.errors import ConfigError, PmrError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXAMPLE_DESK",
    "EXIT_USER_ERROR",
    "AsOfOption",
    "as_of_or_now",
    "check_money",
    "check_number",
    "check_port",
    "display_path",
    "err_console",
    "fail",
    "handles_pmr_errors",
    "out",
    "parse_as_of",
    "refuse_option",
    "require_one_of",
]

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USER_ERROR = 2
EXAMPLE_DESK = Path(__file__).resolve().parent.parent / "examples" / "desk.toml"
AS_OF_EXAMPLE = "2026-11-27T12:00:00Z"


def display_path(path: Path) -> str:
    """``path`` as a person typed it: relative to the working directory when under it, so the
    same command prints the same text in any checkout."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="TIME",
        help=f"Value at this ISO-8601 UTC instant (e.g. {AS_OF_EXAMPLE}) instead of now; "
        "the output is then the same on every run.",
        show_default=False,
    ),
]


class _LazyConsole:
    """A rich ``Console`` built on first use: importing rich costs start-up time that
    ``pmr --help`` and most error paths never need."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            # Piped output (CI logs, `| less`) gets a wide fixed width, not rich's 80 columns.
            width = None if sys.stdout.isatty() else 160
            self._console = Console(
                stderr=self._stderr, highlight=False, soft_wrap=True, width=width
            )
        return getattr(self._console, name)


out = cast("Console", _LazyConsole(stderr=False))
err_console = cast("Console", _LazyConsole(stderr=True))


def fail(exc: PmrError) -> typer.Exit:
    """Print ``exc`` as one error block on stderr and return the exit to raise."""
    from rich.markup import escape

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


# -- the valuation instant -----------------------------------------------------------------
def parse_as_of(text: str | None, *, option: str = "--as-of") -> datetime | None:
    """Parse an ``--as-of`` value: an ISO-8601 instant with its timezone, returned in UTC.

    A bare date or a time without a zone is refused rather than guessed: desks span time
    zones, and a valuation instant off by hours moves option values and expiries.

    >>> parse_as_of("2026-11-27T12:00:00Z")
    datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.timezone.utc)
    >>> parse_as_of("2026-11-27T13:00:00+01:00").isoformat()
    '2026-11-27T12:00:00+00:00'
    >>> parse_as_of(None) is None
    True

    Raises
    ------
    ConfigError
        Not an ISO-8601 date-time, or one without a timezone.
    """
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option} must be an ISO-8601 instant, e.g. {AS_OF_EXAMPLE}", value=text
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(
            f"{option} needs a timezone (UTC: end it with Z), e.g. {AS_OF_EXAMPLE}", value=text
        )
    return at.astimezone(UTC)


def as_of_or_now(as_of: datetime | None) -> datetime:
    """The instant to value at: ``as_of`` when given, else the wall clock (the one place the
    CLI reads it, so a run with ``--as-of`` cannot depend on it)."""
    if as_of is not None:
        return as_of
    from core.clock import SystemClock

    return SystemClock().now()


# -- option combinations ------------------------------------------------------------------
def _given(value: object) -> bool:
    return value is not None and value is not False and value != [] and value != ()


def require_one_of(options: Mapping[str, object]) -> str:
    """Return the one option of ``options`` (name → value) that was given; refuse none or many.

    >>> require_one_of({"--portfolio FILE": None, "--desk FILE": "desk.toml"})
    '--desk FILE'

    Raises
    ------
    ConfigError
        None of them, or more than one, was given.
    """
    given = [name for name, value in options.items() if _given(value)]
    if len(given) == 1:
        return given[0]
    names = " or ".join(options)
    if not given:
        raise ConfigError(f"give one of {names}")
    raise ConfigError(f"{' and '.join(given)} cannot be combined: give exactly one of {names}")


def refuse_option(option: str, value: object, *, because: str) -> None:
    """Refuse ``option`` if it was given, saying why it means nothing here.

    >>> refuse_option("--pool", None, because="goes with --desk")
    >>> refuse_option("--pool", "a", because="goes with --desk")
    Traceback (most recent call last):
    core.errors.ConfigError: --pool goes with --desk
    """
    if _given(value):
        raise ConfigError(f"{option} {because}")


# -- numbers ------------------------------------------------------------------------------
def check_number(
    value: float,
    option: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
) -> float:
    """Refuse NaN, infinities and values outside the given bounds; return ``value``.

    The command line parses ``nan`` and ``inf`` as floats and range checks let NaN through
    (every comparison with it is false), so each numeric option goes through here.

    Raises
    ------
    ConfigError
        Naming the option, the bound and the value.
    """
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number", value=value)
    if gt is not None and not value > gt:
        raise ConfigError(f"{option} must be > {gt:g}", value=value)
    if ge is not None and not value >= ge:
        raise ConfigError(f"{option} must be >= {ge:g}", value=value)
    if lt is not None and not value < lt:
        raise ConfigError(f"{option} must be < {lt:g}", value=value)
    return value


def check_money(value: float | None, option: str) -> Decimal | None:
    """Check a USD amount given on the command line: positive, finite and below the one
    size limit for money (``core.domain.MAX_ABS_AMOUNT``, 1e18, the store's limit too).

    Raises
    ------
    DataError
        NaN, infinite, too large (from ``core.domain.to_decimal``) or not positive.
    """
    if value is None:
        return None
    from core.domain import to_decimal
    from core.errors import DataError

    amount = to_decimal(value, option)
    if amount <= 0:
        raise DataError(f"{option} must be > 0 USD", value=value)
    return amount


def check_port(port: int, option: str = "--port") -> int:
    """A TCP port to listen on: 0 (any free port) to 65535.

    Raises
    ------
    ConfigError
        Outside 0..65535.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"{option} must be in 0..65535 (0 = any free port)", port=port)
    return port
