"""Names that make a margin call exactly-once: call ids, plan ids and leg keys (DESIGN §7).

One scheme, three names:

* a **margin call id** comes from the monitor when it records a breach
  (:func:`new_margin_call_id`): unique and sortable by time; a repeated detection of the same
  breach finds the pool's open call instead of making a second one
  (``core.ledger.plans.record_margin_call``);
* a **plan** is version *n* of a call's plans (1 for the first, *n* + 1 for the re-plan after a
  failed step), persisted with its steps and legs before anything is sent; its id is
  :func:`plan_id` ``(call, n)``;
* a **leg's idempotency key** is :func:`leg_key` ``(call, version, step, leg)``: a pure function
  of where the leg sits, so a retried task, a restarted worker, the monitor's fast path and the
  event-triggered run all compute the same key for the same leg, and a re-plan never reuses a
  key (its version differs).

The key is what a venue sees as our client id, so it must fit the strictest field we write it
to: OKX ``clientId`` takes at most 32 alphanumerics, Binance ``newClientOrderId`` 36 characters
of ``[.A-Z:/a-z0-9_-]``. 32 lowercase hex characters fit both and carry 128 bits of SHA-256: a
collision between two legs needs about 2^64 of them.

Examples
--------
>>> leg_key("mc-20260312-093000123-3f9a1c0d2b7e4a51", 1, 0, 0)
'4dc4c010746770038456097f4546840c'
>>> plan_id("mc-20260312-093000123-3f9a1c0d2b7e4a51", 2)
'mc-20260312-093000123-3f9a1c0d2b7e4a51.v2'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime

from core.clock import Clock
from core.errors import DataError

__all__ = [
    "KEY_HEX_LEN",
    "MAX_CALL_ID_LEN",
    "leg_key",
    "new_margin_call_id",
    "plan_id",
]

KEY_HEX_LEN = 32  # 128 bits; fits OKX clientId (32 alphanumerics) and Binance clientOrderId (36)
_ID_LEN = 64  # the store's id columns (core.ledger.tables.NAME_LEN)
#: A call id leaves room for ``.v`` and a version of up to six digits in a plan id.
MAX_CALL_ID_LEN = _ID_LEN - 8
_CALL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def _check_call_id(margin_call_id: str) -> None:
    if (
        not isinstance(margin_call_id, str)
        or not _CALL_ID_RE.match(margin_call_id)
        or len(margin_call_id) > MAX_CALL_ID_LEN
    ):
        raise DataError(
            f"a margin call id is 1-{MAX_CALL_ID_LEN} characters of A-Z a-z 0-9 _ . : -",
            field="margin_call_id",
            value=repr(margin_call_id),
        )


def _check_number(value: int, field: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DataError(f"{field} must be an integer >= {low}", field=field, value=repr(value))


def leg_key(margin_call_id: str, plan_version: int, step_no: int, leg_no: int) -> str:
    """The idempotency key of leg ``leg_no`` of step ``step_no`` of plan version ``plan_version``
    of margin call ``margin_call_id``: 32 lowercase hex characters (module docstring).

    Raises
    ------
    DataError
        An empty or malformed call id, a version below 1, a step or leg number below 0.
    """
    _check_call_id(margin_call_id)
    _check_number(plan_version, "plan_version", 1)
    _check_number(step_no, "step_no", 0)
    _check_number(leg_no, "leg_no", 0)
    blob = "\x1f".join(("pmr.leg", margin_call_id, str(plan_version), str(step_no), str(leg_no)))
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_HEX_LEN]


def plan_id(margin_call_id: str, version: int) -> str:
    """The store's id of version ``version`` of the plans of ``margin_call_id``."""
    _check_call_id(margin_call_id)
    _check_number(version, "version", 1)
    if version >= 1_000_000:
        raise DataError("plan version must be below 1,000,000", field="version", value=version)
    return f"{margin_call_id}.v{version}"


def new_margin_call_id(clock: Clock, *, random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A new margin call id: ``mc-<UTC date>-<UTC time to the ms>-<64 random bits in hex>``.

    Sortable by the time it was raised (fixed width, UTC), unique without coordination (two
    calls raised in the same millisecond collide with probability 2^-64), lower case, 38
    characters. Time comes from the injected ``clock`` and randomness from ``random_bytes``
    (STYLE rule 9), so tests get fixed ids.

    Examples
    --------
    >>> from core.clock import ManualClock
    >>> new_margin_call_id(ManualClock(1_773_307_800_123_000_000), random_bytes=lambda n: b"\\x01" * n)
    'mc-20260312-093000123-0101010101010101'
    """
    ts_ns = clock.timestamp_ns()
    at = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC)  # integer: no float rounding
    noise = random_bytes(8)
    if len(noise) != 8:
        raise DataError("random_bytes(8) must return 8 bytes", got=len(noise))
    return f"mc-{at:%Y%m%d-%H%M%S}{ts_ns // 1_000_000 % 1000:03d}-{noise.hex()}"
