"""What every pmr flow shares: the retry predicates, the task that opens the desk, limits.

Retry decisions are one pure predicate (STYLE 13): ``core.venues.errors.is_retryable``. Prefect
asks ``retry_condition_fn(task, task_run, state)``; :func:`retry_reads` and
:func:`retry_writes` pull the exception out of the failed state and ask the predicate, as a
read or as a write. For a write, ``OutcomeUnknown`` is never retried (the executor looks the key
up itself before any resend); a leg the executor left in flight raises
``core.execution.orchestration.LegInFlight`` (a ``LookupWindowOpen``), which is retryable: the
next attempt looks the leg up first.

Retry delays are exponential with jitter (``exponential_backoff``, ``retry_jitter_factor``);
tests set them to 0 (``tests/flows/conftest.py``).

Global concurrency limits (created by a bootstrap, used with ``strict=True`` so a missing one
fails loudly instead of silently running unlimited): :data:`GLOBAL_CONCURRENCY_LIMITS`,
:func:`ensure_concurrency_limits`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from core.venues.errors import is_retryable
from flows.runtime import DeskRuntime, desk_runtime

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State, TaskRun

__all__ = [
    "GLOBAL_CONCURRENCY_LIMITS",
    "LEG_WRITES",
    "READ_RETRIES",
    "STRESS_BATCHES",
    "WRITE_RETRIES",
    "ensure_concurrency_limits",
    "exception_of",
    "open_desk",
    "read_retry_policy",
    "retry_reads",
    "retry_writes",
    "write_retry_policy",
]

#: At most this many leg writes in flight across every worker (one slot per leg task).
LEG_WRITES: Final = "pmr-leg-writes"
#: At most this many stress batches evaluating at once across every worker.
STRESS_BATCHES: Final = "pmr-stress-batches"
#: Name → slots of the global concurrency limits the flows use with ``strict=True``.
GLOBAL_CONCURRENCY_LIMITS: Final[dict[str, int]] = {LEG_WRITES: 8, STRESS_BATCHES: 4}

READ_RETRIES: Final = 3
WRITE_RETRIES: Final = 4


def exception_of(state: State[Any]) -> BaseException | None:
    """The exception a failed task run's state carries (``None`` when it carries none)."""
    data = state.data
    if isinstance(data, BaseException):
        return data
    try:
        value = state.result(raise_on_failure=False)
    except Exception as exc:  # the state re-raises what it holds
        return exc
    return value if isinstance(value, BaseException) else None


def retry_reads(task: object, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn`` for a task that only reads venues."""
    exc = exception_of(state)
    return exc is not None and is_retryable(exc, is_write=False)


def retry_writes(task: object, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn`` for a task that may send a write (a leg)."""
    exc = exception_of(state)
    return exc is not None and is_retryable(exc, is_write=True)


def read_retry_policy() -> dict[str, Any]:
    """Task options of a venue read: 3 retries, 1 s · 2^n backoff, jitter, reads predicate."""
    return {
        "cache_policy": NO_CACHE,
        "retries": READ_RETRIES,
        "retry_delay_seconds": exponential_backoff(backoff_factor=1.0),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_reads,
    }


def write_retry_policy() -> dict[str, Any]:
    """Task options of a leg: 4 retries, 2 s · 2^n backoff, jitter, writes predicate."""
    return {
        "cache_policy": NO_CACHE,
        "retries": WRITE_RETRIES,
        "retry_delay_seconds": exponential_backoff(backoff_factor=2.0),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_writes,
    }


@task(name="open-desk", **read_retry_policy())
def open_desk(desk_file: str) -> DeskRuntime:
    """The desk's runtime (``flows.runtime.desk_runtime``): keys are read here, inside the run."""
    return desk_runtime(desk_file)


def ensure_concurrency_limits(limits: dict[str, int] | None = None) -> list[str]:
    """Create the global concurrency limits that do not exist yet; the names created.

    Idempotent: an existing limit is left as it is (an operator may have resized it).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    created = []
    with get_client(sync_client=True) as client:
        for name, slots in (limits or GLOBAL_CONCURRENCY_LIMITS).items():
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=slots)
                )
                created.append(name)
    return created
