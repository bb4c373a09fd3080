"""Hash chain over audit events: canonical serialisation, hashing and verification.

Why a chain: the audit trail is what a post-mortem trusts (DESIGN §7), so an edited, deleted or
inserted row must show. Each event's hash covers its own canonical serialisation *and* the
previous event's hash, so changing any row breaks either its own hash or its successor's link,
and deleting one leaves a gap in ``seq``. Truncating the tail cannot be seen from inside the
table; anchor the head (``seq``, ``hash``) elsewhere (an artifact, a log line) and pass it as
``expected_head`` to catch that too. This is the scheme of RFC 6962's append-only logs and of
Git's object chain, without the Merkle tree: a linear chain suffices for one writer.

Canonical form: UTF-8 JSON with sorted keys, no whitespace, ``Decimal`` as its string, aware
datetimes as ISO-8601 UTC, enums as their value. Floats are refused: JSONB may print a float
differently from Python (``1e300`` comes back as a 301-digit integer), which would break the
hash on PostgreSQL only. Keys that look like credentials are refused: API keys never reach a row.

Examples
--------
>>> h1 = event_hash(1, "ev-1", "TransferRequested", 10, 11, {}, {"amount": "5"}, GENESIS_HASH)
>>> len(h1), h1 == event_hash(1, "ev-1", "TransferRequested", 10, 11, {}, {"amount": "5"}, GENESIS_HASH)
(64, True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from core.errors import DataError

__all__ = [
    "GENESIS_HASH",
    "ChainLink",
    "ChainVerdict",
    "canonical_json",
    "canonical_payload",
    "event_hash",
    "link_refs",
    "verify_chain",
]

GENESIS_HASH = "0" * 64

# Key names (lower-case, "-" folded to "_") that carry credentials. Exact names and suffixes,
# not substrings, so "rate_limit_tokens" or "secretary" stay allowed.
_SECRET_KEYS = frozenset(
    {"apikey", "api_key", "key_secret", "secret", "secret_key", "api_secret", "password",
     "passphrase", "private_key", "token", "access_token", "auth_token", "refresh_token",
     "signature", "credentials"}
)  # fmt: skip
_SECRET_SUFFIXES = ("_secret", "_password", "_passphrase", "_api_key", "_apikey", "_private_key",
                    "_token")  # fmt: skip


def _looks_secret(key: str) -> bool:
    folded = key.lower().replace("-", "_")
    return folded in _SECRET_KEYS or folded.endswith(_SECRET_SUFFIXES)


def canonical_payload(value: Any, *, path: str = "payload") -> Any:
    """Return ``value`` as plain JSON data (dict/list/str/int/bool/None), refusing the unsafe.

    Raises
    ------
    DataError
        A float, a naive datetime, a non-string key, a credential-like key or an unsupported
        type, naming the path inside the payload.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return canonical_payload(value.value, path=path)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise DataError("payload number is NaN or infinite", path=path, value=value)
        return str(value)
    if isinstance(value, float):
        raise DataError(
            "floats are not allowed in audit payloads; pass a Decimal or a string",
            path=path,
            value=value,
        )
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise DataError("payload timestamp must be timezone-aware", path=path)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DataError("payload keys must be strings", path=path, key=repr(key))
            if _looks_secret(key):
                raise DataError(
                    "credential-like key refused: secrets never go into the audit trail",
                    path=f"{path}.{key}",
                )
            out[key] = canonical_payload(item, path=f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [canonical_payload(item, path=f"{path}[{i}]") for i, item in enumerate(value)]
    raise DataError(f"unsupported payload type {type(value).__name__}", path=path)


def canonical_json(value: Any) -> bytes:
    """Serialise already-canonical data deterministically (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def event_hash(
    seq: int,
    event_id: str,
    kind: str,
    ts_event: int,
    ts_init: int,
    refs: Mapping[str, str | None],
    payload: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """Return the SHA-256 hex digest of one event's canonical serialisation plus ``prev_hash``."""
    body = {
        "seq": seq,
        "event_id": event_id,
        "kind": kind,
        "ts_event": ts_event,
        "ts_init": ts_init,
        "refs": dict(refs),
        "payload": canonical_payload(payload),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


class ChainLink(Protocol):
    """What ``verify_chain`` reads from a stored event (``AuditEventRow`` satisfies it)."""

    @property
    def seq(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ts_event(self) -> int: ...
    @property
    def ts_init(self) -> int: ...
    @property
    def margin_call_id(self) -> str | None: ...
    @property
    def plan_id(self) -> str | None: ...
    @property
    def transfer_key(self) -> str | None: ...
    @property
    def payload(self) -> Mapping[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


def link_refs(link: ChainLink) -> dict[str, str | None]:
    """The reference columns an event's hash covers, by name."""
    return {
        "margin_call_id": link.margin_call_id,
        "plan_id": link.plan_id,
        "transfer_key": link.transfer_key,
    }


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """Outcome of ``verify_chain``: ``ok``, how many events were checked, and the first break."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_at_seq: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} events, head seq={self.head_seq}"
        return f"audit chain BROKEN at seq={self.broken_at_seq}: {self.reason}"


def verify_chain(
    links: Iterable[ChainLink], *, expected_head: tuple[int, str] | None = None
) -> ChainVerdict:
    """Check ``links`` (in ``seq`` order) form an unbroken chain from the genesis hash.

    Parameters
    ----------
    links
        Stored events ordered by ``seq``; read lazily, so a large trail streams.
    expected_head
        ``(seq, hash)`` anchored earlier outside the database; a chain whose head is missing it
        was truncated or rewritten.

    Returns
    -------
    ChainVerdict
        ``ok=False`` with the first broken ``seq`` and the reason (gap, wrong link, wrong hash).
    """
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
    seen_anchor = False
    for link in links:
        checked += 1
        fault = _link_fault(link, prev_seq, prev_hash, expected_head)
        if fault:
            return ChainVerdict(False, checked, prev_seq, prev_hash, link.seq, fault)
        seen_anchor = seen_anchor or (expected_head is not None and link.seq == expected_head[0])
        prev_seq, prev_hash = link.seq, link.hash
    if expected_head is not None and not seen_anchor:
        fault = f"anchored head seq={expected_head[0]} is missing: the chain was truncated"
        return ChainVerdict(False, checked, prev_seq, prev_hash, expected_head[0], fault)
    return ChainVerdict(True, checked, prev_seq, prev_hash)


def _link_fault(
    link: ChainLink, prev_seq: int, prev_hash: str, expected_head: tuple[int, str] | None
) -> str:
    """Say what is wrong with ``link`` given its predecessor, or return "" if nothing is."""
    if link.seq != prev_seq + 1:
        return f"seq jumps from {prev_seq} to {link.seq}: events were deleted"
    if link.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash: an event was altered"
    recomputed = event_hash(
        link.seq,
        link.event_id,
        link.kind,
        link.ts_event,
        link.ts_init,
        link_refs(link),
        link.payload,
        link.prev_hash,
    )
    if recomputed != link.hash:
        return "stored hash does not match the event's content: the event was altered"
    if expected_head is not None and link.seq == expected_head[0] and link.hash != expected_head[1]:
        return "hash differs from the anchored head: the chain was rewritten"
    return ""
