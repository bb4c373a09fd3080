"""One place that masks secrets in text: signatures, API-key headers, credential fields, and
every secret value pmr was handed.

Why: a venue's error text carries the signed request (``…&signature=…``), ccxt logs request
headers at DEBUG (``X-MBX-APIKEY``), and any of that can reach an exception message, a
``transfer.error_message`` row, an artifact or a log line (DESIGN §7: API keys never appear in
logs, artifacts or rows). Everything that turns venue text into stored or logged text calls
:func:`redact`: the ccxt error translator (``core.venues.errors``), the log-record hook
installed by :func:`install_log_redaction`, and the venue factory, which registers the
credentials it builds an exchange with (:func:`register_secret`).

Examples
--------
>>> register_secret("s3cr3t-value-1234")
>>> redact("GET /api/v3/account?timestamp=1&signature=ab12cd34 key=s3cr3t-value-1234")
'GET /api/v3/account?timestamp=1&signature=*** key=***'
>>> print(redact("headers {'X-MBX-APIKEY': 'k-123'} body apiKey=k-123&secret=x9"))
headers {'X-MBX-APIKEY': '***'} body apiKey=***&secret=***
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MASK", "install_log_redaction", "redact", "redact_exception", "register_secret"]

MASK = "***"

_SIGNATURE = re.compile(r"(signature=)[^&\s'\"]+", re.IGNORECASE)
# Header and field names whose value is a credential, in headers, dict reprs, JSON and queries.
_FIELD = re.compile(
    r"""((?:x-mbx-apikey|api[-_]?key|api[-_]?secret|secret|password|private[-_]?key)"""
    r"""['"]?\s*[:=]\s*['"]?)([^'"\s,}&]+)""",
    re.IGNORECASE,
)
_MIN_SECRET_LEN = 8

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears from now on (and install the log-record hook).

    Values shorter than 8 characters are not registered: masking them would garble ordinary
    text, and no venue issues credentials that short (Binance API keys and secrets are 64).
    """
    global _secrets
    if not isinstance(value, str) or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value not in _secrets:
            # Longest first, so a secret containing another is masked whole.
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))
    install_log_redaction()


def redact(text: str) -> str:
    """Return ``text`` with signatures, credential fields and registered secrets masked."""
    if not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _SIGNATURE.sub(rf"\g<1>{MASK}", text)
    return _FIELD.sub(rf"\g<1>{MASK}", text)


def redact_exception(exc: BaseException) -> None:
    """Mask secrets in ``exc`` and every exception chained to it, in place.

    A translated error keeps its cause (``raise … from exc``) for debugging; the cause's own
    message (a ccxt error carries the signed URL and the venue's body) must be as clean as ours.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        try:
            text = str(cur)
        except Exception:  # a broken __str__ must not hide the original error
            text = ""
        clean = redact(text)
        if clean != text:
            cur.args = (clean,)
        cur = cur.__cause__ or cur.__context__


def _clean_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a malformed log call: leave it to logging's own error handling
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        redact_exception(record.exc_info[1])
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


def install_log_redaction() -> None:
    """Mask secrets in every log record of every logger (ccxt's, urllib3's, Prefect's ...).

    Installed once, as a ``logging`` record factory wrapping the current one, so a record is
    clean before any handler, filter or test capture sees it: its message, its arguments and
    its traceback.
    """
    global _installed
    with _lock:
        if _installed:
            return
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _clean_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True
