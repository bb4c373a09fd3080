"""Hash chain over audit events: canonical serialisation, keyed hashing and verification.

Why a chain: the audit trail is what a post-mortem trusts (DESIGN §7), so an edited, deleted or
inserted row must show. Each event's hash covers its own canonical serialisation *and* the
previous event's hash, so changing any row breaks either its own hash or its successor's link,
and deleting one leaves a gap in ``seq``. This is the scheme of RFC 6962's append-only logs and
of Git's object chain, without the Merkle tree: a linear chain suffices for one writer.

Why a key: a plain SHA-256 chain only proves the rows agree with each other. Anyone who can
write to the table can edit a payload and recompute every hash after it, and the chain is
consistent again. Keyed rows (``HashScheme.HMAC_SHA256``) use HMAC-SHA256 (RFC 2104) under a
desk secret (``AuditKey``) instead: without the secret nobody can produce a valid hash, so a
re-hashed edit fails verification at the edited row. Rows written before keys existed stay plain
SHA-256 (``HashScheme.SHA256``, recorded per row) and still verify. The first keyed row's hash
covers the last plain row's hash, so the legacy rows are pinned too. A plain row *after* a keyed
row is refused as a downgrade.

What the chain cannot see from inside the table: a deleted tail, or a forger who strips the key
from *every* row. Both show against an anchor: the head ``(seq, hash)`` recorded elsewhere
(``core.ledger.anchors``, ``--expect-head``). ``verify_chain`` checks every anchor it is given.

Canonical form: UTF-8 JSON with sorted keys, no whitespace, ``Decimal`` as its string, aware
datetimes as ISO-8601 UTC, enums as their value. Floats are refused: JSONB may print a float
differently from Python (``1e300`` comes back as a 301-digit integer), which would break the
hash on PostgreSQL only. Keys that look like credentials are refused: API keys never reach a row.

Examples
--------
>>> h1 = event_hash(1, "ev-1", "TransferRequested", 10, 11, {}, {"amount": "5"}, GENESIS_HASH)
>>> len(h1), h1 == event_hash(1, "ev-1", "TransferRequested", 10, 11, {}, {"amount": "5"}, GENESIS_HASH)
(64, True)
>>> key = AuditKey.from_text("k" * 32, source="example")
>>> h1 != event_hash(1, "ev-1", "TransferRequested", 10, 11, {}, {"amount": "5"}, GENESIS_HASH, key=key)
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, Protocol

from core.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_KEY_ENV",
    "GENESIS_HASH",
    "MIN_KEY_BYTES",
    "AnchorPoint",
    "AuditKey",
    "ChainLink",
    "ChainVerdict",
    "HashScheme",
    "canonical_json",
    "canonical_payload",
    "event_hash",
    "link_refs",
    "rewrite_fault",
    "scheme_for",
    "truncation_fault",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
DEFAULT_KEY_ENV = "PMR_AUDIT_KEY"
#: HMAC keys shorter than the hash output weaken it (RFC 2104 §3); 32 bytes = SHA-256's size.
MIN_KEY_BYTES = 32
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class HashScheme(StrEnum):
    """How an audit row's ``hash`` was computed; stored per row (``audit_event.hash_scheme``)."""

    SHA256 = "sha256"  # plain SHA-256: rows written before keyed chains (revision 0003)
    HMAC_SHA256 = "hmac-sha256"  # HMAC-SHA256 under the desk's audit key


@dataclass(frozen=True, slots=True)
class AuditKey:
    """The desk's audit secret, with where it came from (for messages; never the secret).

    Core never looks the secret up in a vault: the CLI or a flow resolves it (an environment
    variable, a Prefect Secret block) and passes the bytes in. ``repr`` shows the source and a
    key id (an HMAC of a fixed label, so two people can check they hold the same key without
    showing it), never the secret.

    Raises
    ------
    ConfigError
        The secret is shorter than ``MIN_KEY_BYTES``.
    """

    secret: bytes = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ConfigError(
                f"audit key is {len(self.secret)} bytes; at least {MIN_KEY_BYTES} are needed "
                "(e.g. `openssl rand -hex 32`)",
                source=self.source,
            )

    @classmethod
    def from_text(cls, text: str, *, source: str) -> AuditKey:
        """The key whose secret is ``text`` as UTF-8, surrounding whitespace removed (so a
        value with a trailing newline from a file or a vault is the same key)."""
        return cls(text.strip().encode("utf-8"), source=source)

    @classmethod
    def from_env(
        cls, name: str = DEFAULT_KEY_ENV, env: Mapping[str, str] | None = None
    ) -> AuditKey | None:
        """The key in environment variable ``name``, or None when it is unset or empty.

        Raises
        ------
        ConfigError
            ``name`` is not a variable name, or its value is too short.
        """
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError("audit key variable name is not an environment variable name",
                              name=name)  # fmt: skip
        value = (os.environ if env is None else env).get(name, "")
        return cls.from_text(value, source=f"${name}") if value.strip() else None

    @property
    def key_id(self) -> str:
        """12 hex characters identifying the key without revealing it."""
        return hmac.new(self.secret, b"pmr.audit.key-id", hashlib.sha256).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"AuditKey(source={self.source!r}, key_id={self.key_id!r})"


def scheme_for(key: AuditKey | None) -> HashScheme:
    """The scheme rows written with ``key`` get: keyed with a key, plain without."""
    return HashScheme.SHA256 if key is None else HashScheme.HMAC_SHA256


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
    *,
    key: AuditKey | None = None,
) -> str:
    """Return the hex digest of one event's canonical serialisation plus ``prev_hash``.

    SHA-256 without ``key`` (``HashScheme.SHA256``), HMAC-SHA256 under it
    (``HashScheme.HMAC_SHA256``). The serialised body is the same for both, so a plain row
    written by an earlier release hashes exactly as it did then.
    """
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
    data = canonical_json(body)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


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
    @property
    def hash_scheme(self) -> str: ...


def link_refs(link: ChainLink) -> dict[str, str | None]:
    """The reference columns an event's hash covers, by name."""
    return {
        "margin_call_id": link.margin_call_id,
        "plan_id": link.plan_id,
        "transfer_key": link.transfer_key,
    }


@dataclass(frozen=True, slots=True)
class AnchorPoint:
    """A claim that the chain's event ``seq`` had hash ``hash``, and who made it (``label``)."""

    seq: int
    hash: str
    label: str  # "anchor #4 (reconcile, 2026-03-12T09:35:00+00:00)", "--expect-head"


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """Outcome of ``verify_chain``: whether a fault was found, the first one, and what was seen.

    ``ok`` means no fault was found in what could be checked. Keyed events read without the key
    (``unauthenticated``) had their links and order checked but not their content, so
    ``complete`` is the stronger claim: no fault, and every event's content checked.
    """

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_at_seq: int | None = None
    reason: str = ""
    broken_event_id: str | None = None  # None for a missing event
    plain: int = 0  # plain SHA-256 events (written before keys, or unkeyed)
    keyed: int = 0  # HMAC events authenticated with the key
    unauthenticated: int = 0  # HMAC events whose content could not be checked: no key
    anchors_matched: int = 0

    @property
    def complete(self) -> bool:
        """No fault, and every event's content checked."""
        return self.ok and self.unauthenticated == 0

    def __str__(self) -> str:
        if not self.ok:
            event = f" (event {self.broken_event_id})" if self.broken_event_id else ""
            return f"audit chain BROKEN at seq={self.broken_at_seq}{event}: {self.reason}"
        parts = [f"audit chain intact: {self.checked} events"]
        if self.keyed or self.unauthenticated:
            mix = [f"{self.keyed + self.unauthenticated} keyed"]
            if self.plain:
                mix.append(f"{self.plain} plain")
            parts[0] += f" ({', '.join(mix)})"
        parts.append(f"head seq={self.head_seq}")
        if self.anchors_matched:
            parts.append(f"{self.anchors_matched} anchored heads matched")
        text = ", ".join(parts)
        if self.unauthenticated:
            text += (
                f"; WARNING: {self.unauthenticated} keyed events NOT authenticated "
                "(no audit key given): links and order checked, content not"
            )
        return text


@dataclass(slots=True)
class _Walk:
    """Running state of one verification (mutable; private to ``verify_chain``)."""

    prev_seq: int = 0
    prev_hash: str = GENESIS_HASH
    checked: int = 0
    plain: int = 0
    keyed: int = 0
    unauthenticated: int = 0
    anchors_matched: int = 0
    first_keyed_seq: int | None = None

    def verdict(
        self, fault: str = "", *, at: int | None = None, event: str | None = None
    ) -> ChainVerdict:
        return ChainVerdict(
            ok=not fault, checked=self.checked, head_seq=self.prev_seq, head_hash=self.prev_hash,
            broken_at_seq=at, reason=fault, broken_event_id=event, plain=self.plain,
            keyed=self.keyed, unauthenticated=self.unauthenticated,
            anchors_matched=self.anchors_matched,
        )  # fmt: skip


def verify_chain(
    links: Iterable[ChainLink],
    *,
    key: AuditKey | None = None,
    anchors: Iterable[AnchorPoint] = (),
    expected_head: tuple[int, str] | None = None,
    start: tuple[int, str] = (0, GENESIS_HASH),
    keyed_since: int | None = None,
) -> ChainVerdict:
    """Check ``links`` (in ``seq`` order) form an unbroken chain from the genesis hash.

    Parameters
    ----------
    links
        Stored events ordered by ``seq``; read lazily, so a large trail streams.
    key
        The desk's audit key: keyed events are authenticated with it. Without it they are
        counted as ``unauthenticated`` (links and order still checked).
    anchors
        Heads recorded earlier outside the chain (``core.ledger.anchors``): the event at each
        anchored ``seq`` must exist and carry the anchored hash.
    expected_head
        ``(seq, hash)`` kept outside the database by an operator: one more anchor.
    start, keyed_since
        Verify only the events after ``start = (seq, hash)``, an event already trusted (an
        anchor checked against its row), given the ``seq`` of the chain's first keyed event
        (None: none before ``start``). The default starts from genesis.

    Returns
    -------
    ChainVerdict
        ``ok=False`` with the first broken ``seq``, its event id and the reason (gap, wrong
        link, wrong hash or MAC, downgrade to plain, anchor mismatch, deleted tail).
    """
    pinned: dict[int, list[AnchorPoint]] = defaultdict(list)
    for anchor in anchors:
        pinned[anchor.seq].append(anchor)
    if expected_head is not None:
        pinned[expected_head[0]].append(
            AnchorPoint(*expected_head, label="the expected head (kept outside the store)")
        )
    walk = _Walk(prev_seq=start[0], prev_hash=start[1])
    if keyed_since is not None and keyed_since <= start[0]:
        walk.first_keyed_seq = keyed_since
    for link in links:
        walk.checked += 1
        here = pinned.pop(link.seq, [])
        fault = _link_fault(link, walk, key) or _anchor_fault(link, here)
        if fault:
            return walk.verdict(fault, at=link.seq, event=link.event_id)
        walk.anchors_matched += len(here)
        walk.prev_seq, walk.prev_hash = link.seq, link.hash
    for anchor in pinned.pop(0, []):  # an anchor taken while the chain was empty
        if anchor.hash != GENESIS_HASH:
            return walk.verdict(f"{anchor.label} gives seq=0 a hash other than genesis", at=0)
        walk.anchors_matched += 1
    beyond = [seq for seq in pinned if seq > walk.prev_seq]  # the rest precede ``start``
    if beyond:  # anchored past the head: the rows after it were removed
        last = pinned[max(beyond)][0]
        first = walk.prev_seq + 1
        fault = truncation_fault(first, last)
        return walk.verdict(fault, at=first)
    return walk.verdict()


def truncation_fault(first_missing: int, anchor: AnchorPoint) -> str:
    """The verdict's words for events ``first_missing..anchor.seq`` gone past the head."""
    if first_missing == anchor.seq:
        missing = f"event seq={first_missing} is"
    else:
        missing = f"events seq={first_missing}..{anchor.seq} are"
    return (
        f"{missing} missing, though {anchor.label} is at seq={anchor.seq}: "
        "the tail was deleted (the chain was truncated)"
    )


def rewrite_fault(anchor: AnchorPoint) -> str:
    """The verdict's words for an event whose hash is not the one ``anchor`` recorded."""
    return f"hash differs from the anchored head ({anchor.label}): the chain was rewritten"


def _link_fault(link: ChainLink, walk: _Walk, key: AuditKey | None) -> str:
    """Say what is wrong with ``link`` given the walk so far (and count it), or return ""."""
    if link.seq != walk.prev_seq + 1:
        return f"seq jumps from {walk.prev_seq} to {link.seq}: events were deleted"
    if link.prev_hash != walk.prev_hash:
        return "prev_hash does not match the previous event's hash: an event was altered"
    match link.hash_scheme:
        case HashScheme.SHA256:
            if walk.first_keyed_seq is not None:
                return (
                    f"plain SHA-256 event after keyed events (keyed since seq="
                    f"{walk.first_keyed_seq}): the event was re-hashed without the key"
                )
            walk.plain += 1
            if _recompute(link, None) != link.hash:
                return "stored hash does not match the event's content: the event was altered"
        case HashScheme.HMAC_SHA256:
            if walk.first_keyed_seq is None:
                walk.first_keyed_seq = link.seq
            if key is None:
                walk.unauthenticated += 1
            elif _recompute(link, key) != link.hash:
                # The chain's first keyed event failing is what a wrong key looks like.
                hint = " (or the key is wrong)" if link.seq == walk.first_keyed_seq else ""
                return (
                    "stored MAC does not match the event's content under the audit key: "
                    f"the event was altered{hint}"
                )
            else:
                walk.keyed += 1
        case other:
            return f"unknown hash scheme {other!r}"
    return ""


def _recompute(link: ChainLink, key: AuditKey | None) -> str:
    return event_hash(
        link.seq,
        link.event_id,
        link.kind,
        link.ts_event,
        link.ts_init,
        link_refs(link),
        link.payload,
        link.prev_hash,
        key=key,
    )


def _anchor_fault(link: ChainLink, anchors: list[AnchorPoint]) -> str:
    """Say which anchor ``link`` contradicts, or return ""."""
    for anchor in anchors:
        if anchor.hash != link.hash:
            return rewrite_fault(anchor)
    return ""
