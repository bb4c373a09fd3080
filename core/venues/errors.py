"""Translate ccxt's exceptions into pmr's venue error tree, in exactly one place.

Why one place (STYLE rules 11–13): every venue call, read or write, goes through
:func:`translate_ccxt_errors`; retry decisions go through :func:`is_retryable`, which serves our
own loops and Prefect's ``retry_condition_fn`` alike.

Why by URL path and Binance code, not by ccxt's class: ccxt 4.5.90 picks Binance's per-API error
table by *hostname* (``binance.get_exceptions_by_url``), so the same ``{"code": -5013}`` is an
``InsufficientFunds`` from ``api.binance.com`` and a plain ``ExchangeError`` from a loopback
simulator or a proxy. We read the Binance code from the response body and classify it with one
table that ignores the host, and fall back to ccxt's class only when no code is present.

The write rule (Binance REST docs, "HTTP return codes": a 5XX "is NOT a failure; the execution
status is UNKNOWN"): for a write, any network-level failure after the request may have left us
(timeout, reset, 5xx, -1006/-1007) is :class:`OutcomeUnknown`, and so is a 200 whose body we
cannot read (HTML from a proxy, a truncated body, an answer without the write's id): the caller
must look the write up by its key before any resend, never treat it as refused. A refusal the venue answered clearly (429/418, -1003, a 4xx with
a code) means nothing was applied.

Venue texts carry secrets (a ccxt error names the signed URL): the translator masks them with
:func:`core.redact.redact`, in our message and in the chained ccxt exception alike.

The clock rule (Binance spot REST docs, "Timing security"): a signed request is processed only if
``serverTime − recvWindow ≤ timestamp < serverTime + 1000 ms``; otherwise ``-1021`` and nothing is
applied. That is :class:`ClockSkewRejected`: the adapter re-synchronises its offset to the
venue's clock (ccxt's ``options['timeDifference']``) and retries a read once; a write is raised
to the caller, who looks the key up before any resend (see the class docstring).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import ccxt

from core.errors import (
    InsufficientFunds,
    OutcomeUnknown,
    RateLimited,
    TransferNotAllowed,
    TransientVenueError,
    VenueError,
    VenueFatal,
    VenueRejected,
    VenueUnavailable,
)
from core.redact import redact, redact_exception

__all__ = [
    "BINANCE_CODE_CLASSES",
    "ClockSkewRejected",
    "DuplicateIdempotencyKey",
    "ErrorContext",
    "api_family",
    "binance_code_from_message",
    "classify_binance_code",
    "is_retryable",
    "translate_ccxt_errors",
    "with_context",
]


class DuplicateIdempotencyKey(VenueRejected):
    """A write with this idempotency key was already sent (or the venue has it): look it up,
    never resend. Raised before any request."""


class ClockSkewRejected(TransientVenueError):
    """Binance ``-1021``: the request's timestamp was outside the venue's window.

    Binance processes a signed request only if ``serverTime − recvWindow ≤ timestamp <
    serverTime + 1000 ms`` (spot REST docs, "Timing security"; ccxt sends ``recvWindow=10000``).
    The check runs before the request is processed, so **nothing was applied**. When this error
    reaches a caller, the adapter has already re-synchronised its clock offset to the venue's
    time (``resynced=True`` in the context, with the new ``time_difference_ms``).

    What the caller does:

    - a read: nothing; the adapter retried it once after the re-sync and raises this only if the
      venue refused again (the desk's clock is moving faster than it can be corrected: page a
      human about NTP);
    - a write (transfer, convert accept, withdrawal, margin order): the step is **not** resent
      from inside the adapter. The journal keeps the key, so a second send under it is refused
      with ``DuplicateIdempotencyKey``, until the executor frees it (``forget_transfer`` /
      ``forget_convert`` / ``forget_withdrawal`` / ``forget_margin_order``, allowed at once for
      a ``-1021``: no lookup window to wait out, the venue never processed it) and sends once
      more, now stamped on the venue's clock. A convert quote may have expired meanwhile: ask
      for a new one.

    ``is_retryable`` is true for reads and false for writes.
    """


# Binance error codes → what the caller must do. Sources: Binance "Error Codes" pages for spot,
# wallet (sapi), USDⓈ-M, COIN-M and portfolio margin (developers.binance.com/docs/.../error-code).
# "transient" codes become OutcomeUnknown for writes (the docs say "execution status unknown").
BINANCE_CODE_CLASSES: Mapping[int, type[VenueError]] = {
    -1000: TransientVenueError,  # UNKNOWN
    -1001: TransientVenueError,  # DISCONNECTED: internal error, try again
    -1003: RateLimited,  # TOO_MANY_REQUESTS (weight) / IP banned until ...
    -1004: VenueUnavailable,  # SERVER_BUSY (refused before processing)
    -1006: TransientVenueError,  # UNEXPECTED_RESP: execution status unknown
    -1007: TransientVenueError,  # TIMEOUT: send status unknown; execution status unknown
    -1008: VenueUnavailable,  # SERVER_BUSY: overloaded, try in a few minutes
    -1015: RateLimited,  # TOO_MANY_ORDERS
    -1016: VenueUnavailable,  # SERVICE_SHUTTING_DOWN
    -1020: TransferNotAllowed,  # UNSUPPORTED_OPERATION (the simulator's halted route)
    -1021: ClockSkewRejected,  # INVALID_TIMESTAMP: outside recvWindow / 1 s ahead; not applied
    -1002: VenueFatal,  # UNAUTHORIZED
    -1022: VenueFatal,  # INVALID_SIGNATURE
    -2014: VenueFatal,  # BAD_API_KEY_FMT
    -2015: VenueFatal,  # REJECTED_MBX_KEY: invalid key, IP or permissions
    -1100: VenueRejected,  # ILLEGAL_CHARS
    -1101: VenueRejected,  # TOO_MANY_PARAMETERS
    -1102: VenueRejected,  # MANDATORY_PARAM_EMPTY_OR_MALFORMED
    -1111: VenueRejected,  # BAD_PRECISION
    -1121: VenueRejected,  # BAD_SYMBOL
    -1130: VenueRejected,  # INVALID_PARAMETER
    -2010: InsufficientFunds,  # NEW_ORDER_REJECTED: account has insufficient balance
    -2019: InsufficientFunds,  # MARGIN_NOT_SUFFICIEN (futures)
    -3020: InsufficientFunds,  # transfer out amount exceeds max amount
    -3041: InsufficientFunds,  # balance is not enough
    -4001: VenueRejected,  # invalid operation
    -5002: InsufficientFunds,  # insufficient balance (withdraw)
    -5003: InsufficientFunds,  # you don't have this asset
    -5013: InsufficientFunds,  # asset transfer failed: insufficient balance
    -9000: TransferNotAllowed,  # user asset amount check fail / operation not permitted
    -13000: TransferNotAllowed,  # redemption/transfer of this asset is not supported
}


_CODE_RE = re.compile(r'"code"\s*:\s*"?(-?\d+)"?')
_FAMILY_RE = re.compile(r"/(api|sapi|fapi|dapi|papi|eapi)/v\d+/")


def api_family(url_or_path: str) -> str:
    """Return the Binance API family of a URL or path: ``api``, ``sapi``, ``fapi`` ...

    Each family has its own weight budget (Binance "LIMITS" sections), so rate limits and error
    classification key on it. Unknown paths are ``other``.

    Examples
    --------
    >>> api_family("http://127.0.0.1:8080/sapi/v1/asset/transfer")
    'sapi'
    """
    path = urlsplit(url_or_path).path if "://" in url_or_path else url_or_path
    m = _FAMILY_RE.search(path)
    return m.group(1) if m else "other"


def binance_code_from_message(message: str) -> int | None:
    """Pull the Binance ``code`` out of a ccxt error message (ccxt puts the raw body there)."""
    start = message.find("{")
    if start >= 0:
        try:
            body = json.loads(message[start:])
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body:
            try:
                return int(body["code"])
            except (TypeError, ValueError):
                return None
    m = _CODE_RE.search(message)
    return int(m.group(1)) if m else None


def classify_binance_code(code: int, *, is_write: bool) -> type[VenueError] | None:
    """Map a Binance error code to our class; ``None`` if the code is not in the table.

    A "transient" code on a write means the venue itself says the outcome is unknown.
    """
    cls = BINANCE_CODE_CLASSES.get(code)
    if cls is TransientVenueError:
        return OutcomeUnknown if is_write else VenueUnavailable
    return cls


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What the translator knows about the call: venue, operation, write or read, last URL."""

    venue: str
    op: str
    is_write: bool


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def _request_left(exc: BaseException) -> bool:
    """False only when the cause proves the request never left (connect refused/timed out)."""
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        name = type(cause).__name__
        if name in {"ConnectTimeout", "NewConnectionError", "NameResolutionError"}:
            return False
        text = str(cause)
        if "NewConnectionError" in text or "Connection refused" in text:
            return False
        cause = cause.__cause__ or cause.__context__
    return True


@contextmanager
def translate_ccxt_errors(
    op: str,
    venue: str,
    *,
    is_write: bool,
    response_headers: Mapping[str, str] | None = None,
    **context: object,
) -> Iterator[None]:
    """Run a ccxt call and re-raise its errors as pmr venue errors (``raise … from exc``).

    Parameters
    ----------
    op
        Operation name (``transfer``, ``fetch_balance`` ...), put in the message.
    venue
        Venue name (``sim-a``, ``binance-main``).
    is_write
        True for calls that change state: network failures then mean *outcome unknown*.
    response_headers
        A mapping read lazily (the ccxt exchange's ``last_response_headers``) for ``Retry-After``.
    **context
        Asset, amount, wallets ... named in the message; never secrets.

    Raises
    ------
    RateLimited, VenueUnavailable, OutcomeUnknown, InsufficientFunds, TransferNotAllowed,
    VenueRejected, VenueFatal
    """
    ctx: dict[str, object] = {"venue": venue, "op": op, **context}
    try:
        yield
    except VenueError as exc:
        # Raised by our own hooks inside ccxt's call (the limiter's deadline, the write guard):
        # add the call's context (asset, amount, key ...) it could not know.
        missing = {k: v for k, v in ctx.items() if k not in exc.context}
        if not missing:
            raise
        raise with_context(exc, missing) from exc
    except ccxt.BaseError as exc:
        raise _translate(exc, is_write=is_write, headers=response_headers, ctx=ctx) from exc


def with_context(exc: VenueError, extra: Mapping[str, object]) -> VenueError:
    """A copy of ``exc`` (same class, same message) whose context also holds ``extra``."""
    merged = {**extra, **exc.context}
    return type(exc)(exc.message, **merged)


def _translate(
    exc: ccxt.BaseError,
    *,
    is_write: bool,
    headers: Mapping[str, str] | None,
    ctx: dict[str, object],
) -> VenueError:
    redact_exception(exc)  # the cause stays chained: its text must be as clean as ours
    message = redact(str(exc))
    code = binance_code_from_message(message)
    if code is not None:
        ctx["binance_code"] = code
    short = message if len(message) <= 300 else message[:300] + "…"

    # 1. HTTP-level throttling first: 429/418 always mean "not processed, wait".
    if isinstance(exc, ccxt.DDoSProtection) or code in (-1003, -1015):
        retry = _retry_after_s(headers)
        return RateLimited(f"rate limited: {short}", retry_after_s=retry, **ctx)
    # 2. A Binance code in the body decides, whatever host answered.
    if code is not None:
        cls = classify_binance_code(code, is_write=is_write)
        if cls is not None:
            if cls is RateLimited:
                return RateLimited(f"rate limited: {short}", retry_after_s=None, **ctx)
            if cls is ClockSkewRejected:
                return ClockSkewRejected(
                    f"request stamped outside the venue's time window, not applied: {short}",
                    **ctx,
                )
            return cls(f"venue refused or failed: {short}", **ctx)
    # 3. A 2xx whose body is not JSON (HTML from a proxy, a truncated body): the venue may
    #    have applied the write and we cannot read its id.
    if isinstance(exc, ccxt.BadResponse):
        if is_write:
            return OutcomeUnknown(
                "the venue answered a write with an unreadable body; it may have been applied: "
                f"look it up by key before any resend: {short}",
                **ctx,
            )
        return VenueUnavailable(f"unreadable answer: {short}", **ctx)
    # 4. No code: network-level failures. Writes that may have left are outcome-unknown.
    if isinstance(exc, ccxt.NetworkError):
        if is_write and _request_left(exc):
            return OutcomeUnknown(
                f"no answer to a write; look it up by key before any resend: {short}", **ctx
            )
        return VenueUnavailable(f"venue unreachable: {short}", **ctx)
    # 5. ccxt's own classification for the rest.
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds(f"insufficient funds: {short}", **ctx)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return VenueFatal(f"authentication or permission failure: {short}", **ctx)
    if isinstance(exc, ccxt.NotSupported):
        return TransferNotAllowed(f"not supported by the venue: {short}", **ctx)
    if isinstance(exc, ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.BadSymbol):
        return VenueRejected(f"bad request: {short}", **ctx)
    if isinstance(exc, ccxt.ExchangeError):
        return VenueRejected(f"venue error: {short}", **ctx)
    return VenueFatal(f"unexpected ccxt error {type(exc).__name__}: {short}", **ctx)


def is_retryable(exc: BaseException, *, is_write: bool) -> bool:
    """Decide whether the same call may be sent again (after backoff).

    Reads retry on any transient error. Writes never blind-retry an ``OutcomeUnknown``: the
    transfer must first be looked up by its idempotency key. ``RateLimited`` and
    ``VenueUnavailable`` on a write mean the venue refused before processing, so a resend is safe.
    A ``ClockSkewRejected`` write was not applied either, but it is not resent from here: the
    caller looks the key up first (see :class:`ClockSkewRejected`).

    Examples
    --------
    >>> is_retryable(OutcomeUnknown("timeout"), is_write=True)
    False
    >>> is_retryable(OutcomeUnknown("timeout"), is_write=False)
    True
    >>> is_retryable(ClockSkewRejected("-1021"), is_write=True)
    False
    """
    if not isinstance(exc, TransientVenueError):
        return False
    return not (is_write and isinstance(exc, OutcomeUnknown | ClockSkewRejected))
