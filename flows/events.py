"""The Prefect events pmr emits, in one place: names, resources, payload keys and ids.

Why one module: the event-triggered margin-call deployment templates its parameters from
``{{ event.payload.<key> }}``, so the keys an emitter always sends are a contract. They are
declared here (:data:`EVENT_PAYLOAD_KEYS`) and :func:`emit` refuses a payload that does not
carry exactly those keys, flat (strings and numbers only: a nested value or ``None`` cannot be
templated into a flow parameter).

==========================  =============================  ====================================
event                       resource                       emitted by
==========================  =============================  ====================================
``pmr.reconcile.drift``     ``pmr.venue.<venue>``          reconcile, per drift over tolerance
``pmr.stress.breach``       ``pmr.pool.<venue>.<pool>``    stress-test, per weak pool
``pmr.margin.call``         ``pmr.pool.<venue>.<pool>``    monitor, once per margin call
``pmr.margin.cured``        ``pmr.pool.<venue>.<pool>``    margin-call, ratio restored
``pmr.margin.escalated``    ``pmr.pool.<venue>.<pool>``    margin-call, not restored
==========================  =============================  ====================================

Event ids are derived (uuid5) from what the event is about: ``pmr.margin.call`` from the
margin-call id, so a repeated detection of the same call sends the same id and cannot start a
second triggered run. Events are notifications; the audit truth is the store (DESIGN §9).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "EVENT_PAYLOAD_KEYS",
    "MARGIN_CALL",
    "MARGIN_CURED",
    "MARGIN_ESCALATED",
    "RECONCILE_DRIFT",
    "STRESS_BREACH",
    "emit",
    "event_id",
    "flat",
    "pool_resource",
    "venue_resource",
]

RECONCILE_DRIFT: Final = "pmr.reconcile.drift"
STRESS_BREACH: Final = "pmr.stress.breach"
MARGIN_CALL: Final = "pmr.margin.call"
MARGIN_CURED: Final = "pmr.margin.cured"
MARGIN_ESCALATED: Final = "pmr.margin.escalated"

#: The payload keys each event always sends (and only those). A deployment trigger may template
#: any of them into a flow parameter: ``{{ event.payload.margin_call_id }}``.
EVENT_PAYLOAD_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    RECONCILE_DRIFT: (
        "desk_file", "venue", "wallet", "asset", "expected", "reported", "drift", "cause",
        "snapshot_id",
    ),
    STRESS_BREACH: (
        "desk_file", "run_id", "pool_id", "venue", "scenario", "ratio", "desk_level",
        "deficit_usd", "uncovered_usd", "liquidation_before_cover",
    ),
    MARGIN_CALL: (
        "desk_file", "margin_call_id", "pool_id", "venue", "ratio", "call_level",
        "target_ratio", "deficit_usd", "desk_level",
    ),
    MARGIN_CURED: (
        "desk_file", "margin_call_id", "pool_id", "venue", "ratio", "target_ratio",
        "plan_versions", "legs", "trigger",
    ),
    MARGIN_ESCALATED: (
        "desk_file", "margin_call_id", "pool_id", "venue", "ratio", "target_ratio",
        "uncovered_usd", "reason", "trigger",
    ),
}  # fmt: skip

# Fixed namespace: the same margin call gives the same event id on every host and release.
_NAMESPACE = uuid.UUID("6f0b3c1e-8f55-4d7c-9a57-2f4e4b1d9c30")


def event_id(event: str, *parts: object) -> uuid.UUID:
    """The event's id: uuid5 of its name and what it is about.

    >>> event_id(MARGIN_CALL, "mc-1") == event_id(MARGIN_CALL, "mc-1")
    True
    >>> event_id(MARGIN_CALL, "mc-1") == event_id(MARGIN_CURED, "mc-1")
    False
    """
    return uuid.uuid5(_NAMESPACE, ":".join([event, *map(str, parts)]))


def pool_resource(venue: str, pool_id: str) -> dict[str, str]:
    """The Prefect resource of a pool: ``pmr.pool.<venue>.<pool>``."""
    return {
        "prefect.resource.id": f"pmr.pool.{venue}.{pool_id}",
        "prefect.resource.name": pool_id,
        "pmr.venue": venue,
    }


def venue_resource(venue: str) -> dict[str, str]:
    """The Prefect resource of a venue: ``pmr.venue.<venue>``."""
    return {"prefect.resource.id": f"pmr.venue.{venue}", "prefect.resource.name": venue}


def flat(value: object) -> str | int | float:
    """A payload value: numbers stay numbers (a ``Decimal`` becomes a float: events are
    notifications, the exact figure is in the store), ``None`` becomes ``"none"``, a bool
    ``"true"``/``"false"``, anything else its string.

    >>> flat(Decimal("1.25")), flat(None), flat(True), flat(3)
    (1.25, 'none', 'true', 3)
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def emit(
    event: str,
    resource: dict[str, str],
    payload: Mapping[str, object],
    *,
    id_parts: tuple[object, ...],
) -> Any:
    """Emit ``event`` to Prefect with a flat payload of exactly its declared keys.

    Returns the emitted ``prefect.events.Event`` (``None`` where Prefect emits nothing: no API
    configured).

    Raises
    ------
    ValueError
        An unknown event name, or a payload whose keys are not the declared ones.
    """
    from prefect.events import emit_event

    keys = EVENT_PAYLOAD_KEYS.get(event)
    if keys is None:
        raise ValueError(f"unknown pmr event {event!r}; declare it in EVENT_PAYLOAD_KEYS")
    if set(payload) != set(keys):
        missing = sorted(set(keys) - set(payload))
        extra = sorted(set(payload) - set(keys))
        raise ValueError(f"{event} payload keys differ: missing {missing}, extra {extra}")
    body = {k: flat(payload[k]) for k in keys}
    return emit_event(event=event, resource=resource, payload=body, id=event_id(event, *id_parts))
