"""One error tree for pmr, shaped by what the caller must do about each error.

Every error carries a human message plus structured ``context`` (venue, operation,
asset, amount, wallets, file, key path ...) so logs, artifacts and audit rows can say
*what was wrong and where* without parsing strings. Secrets never go into ``context``.

What the system does for each branch:

- ``ConfigError``: refuse to start; nothing is written.
- ``DataError``: refuse to compute (no partial margin report, no plan) and name the input.
- ``VenueError``: decided by the subclass; see ``is_retryable`` in ``core.venues.errors``.
- ``RoutingError``: the solver failed; fall back to the greedy baseline and say so.
- ``ExecutionError``: stop the plan at the failing step and re-plan without that source.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ConfigError",
    "DataError",
    "ExecutionError",
    "InsufficientFunds",
    "LookupWindowOpen",
    "NaNPriceError",
    "OutcomeUnknown",
    "PmrError",
    "RateBudgetExhausted",
    "RateLimited",
    "RoutingError",
    "StalePriceError",
    "TransferNotAllowed",
    "TransientVenueError",
    "UnknownAssetError",
    "VenueError",
    "VenueFatal",
    "VenueNotReady",
    "VenueRejected",
    "VenueUnavailable",
]


class PmrError(Exception):
    """Base of every error pmr raises on purpose.

    Parameters
    ----------
    message
        What was wrong, in words a desk operator understands.
    **context
        Where it was wrong: venue, op, asset, amount, wallet, path, field ...
        Rendered after the message as ``key=value`` pairs, sorted by key.
    """

    def __init__(self, message: str, **context: object) -> None:
        self.message = message
        self.context: Mapping[str, object] = dict(context)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.context:
            return self.message
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({where})"


class ConfigError(PmrError):
    """The desk configuration is malformed; pmr refuses to start and writes nothing."""


class DataError(PmrError):
    """An input value (price, balance, position, asset) is unusable; no partial result."""


class StalePriceError(DataError):
    """A price is older than the configured maximum age; margin is not computed on it."""


class NaNPriceError(DataError):
    """A price is NaN, infinite, zero or negative; margin is not computed on it."""


class UnknownAssetError(DataError):
    """An asset or instrument is referenced but never declared."""


class RoutingError(PmrError):
    """The optimiser failed (solver error, inaccurate status); the greedy fallback is used."""


class ExecutionError(PmrError):
    """A plan step could not be carried out; the plan stops there and is re-planned."""


class VenueError(PmrError):
    """Anything a venue (live or simulated) did that we did not want."""


class TransientVenueError(VenueError):
    """The venue may succeed if asked again later: reads retry with backoff."""


class RateLimited(TransientVenueError):
    """HTTP 429/418 or Binance -1003: wait ``retry_after_s`` (if known) before the next call."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **context: object):
        self.retry_after_s = retry_after_s
        super().__init__(message, retry_after_s=retry_after_s, **context)


class RateBudgetExhausted(RateLimited):
    """Our own weight budget has no room before the caller's deadline: **nothing was sent**.

    Raised by the adapter's limiter *before* a request is signed, when the wait for the API
    family's window (or a 429/418 pause) would end past ``ts_deadline_ns``. ``retry_after_s``
    says when the budget has room again, so the router can plan around it (another source, or
    this one later); a resend after that wait is safe, since the venue never saw the request.
    """


class VenueUnavailable(TransientVenueError):
    """The venue is down or in maintenance (5xx, connection refused before sending)."""


class OutcomeUnknown(TransientVenueError):
    """A write left us and no answer came back: look it up by key before any resend."""


class LookupWindowOpen(TransientVenueError):
    """A write's lookup found nothing *yet*: the venue may still book it until the window closes.

    Raised by ``forget_*`` when asked to free a key whose last lookup did not prove absence
    (``not_found_yet``, or no lookup at all). Look the key up again after ``retry_after_s``;
    never resend before a lookup says ``not_found``.
    """

    def __init__(self, message: str, *, retry_after_s: float, **context: object):
        self.retry_after_s = retry_after_s
        super().__init__(message, retry_after_s=retry_after_s, **context)


class VenueNotReady(VenueError):
    """The adapter is not warmed up (markets, currencies, clock offset): **nothing was sent**.

    Writes never load market data implicitly (a timeout there would be mistaken for an unknown
    write): call ``warm_up()`` at start; the caller's step is not attempted until it succeeds.
    """


class VenueRejected(VenueError):
    """The venue understood the request and said no; asking again will not help."""


class InsufficientFunds(VenueRejected):
    """Not enough free balance in the origin wallet (Binance -5013, -2010, -2019)."""


class TransferNotAllowed(VenueRejected):
    """The transfer route is closed: halted, not permitted, or an unknown wallet."""


class VenueFatal(VenueError):
    """Authentication, permission or a bug on our side: stop and page a human."""
