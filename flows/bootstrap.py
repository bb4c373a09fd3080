"""Prefect-side set-up a desk needs before its deployments run: concurrency limits and secrets.

``pmr serve`` (and ``deployments/serve.py``) run :func:`bootstrap` against the Prefect API
before serving. It is idempotent:

* **global concurrency limits**: the flows take ``flows.tasks.GLOBAL_CONCURRENCY_LIMITS`` with
  ``concurrency(name, strict=True)``, so a missing limit fails a run loudly instead of letting it
  run unlimited; the bootstrap creates those that do not exist (an existing one keeps the size
  an operator gave it);
* **Secret blocks**: every ``credentials.secret_block`` a live venue of the desk names, plus any
  extra (the audit key's block), must exist; the report lists what is missing. Names only: no
  value is read here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.config import DeskConfig

__all__ = ["BootstrapReport", "bootstrap", "secret_blocks"]


def secret_blocks(desk: DeskConfig, extra: Iterable[str] = ()) -> list[str]:
    """The Prefect Secret block names the desk relies on (venue credentials, then ``extra``)."""
    names = [
        v.credentials.secret_block
        for v in desk.venues
        if v.credentials is not None and v.credentials.secret_block
    ]
    return list(dict.fromkeys([*names, *extra]))


@dataclass(frozen=True, slots=True)
class BootstrapReport:
    """Limits created now (``created``), all limits the flows take, and the Secret blocks."""

    created: tuple[str, ...]
    limits: tuple[str, ...]
    secrets_found: tuple[str, ...]
    secrets_missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.secrets_missing

    def lines(self) -> list[str]:
        out = [
            f"concurrency limit {n}: {'created' if n in self.created else 'present'}"
            for n in self.limits
        ]
        out += [f"secret block {n}: present" for n in self.secrets_found]
        out += [
            f"secret block {n}: MISSING (create it before a live venue runs)"
            for n in self.secrets_missing
        ]
        return out


def bootstrap(desk: DeskConfig, *, extra_secret_blocks: Iterable[str] = ()) -> BootstrapReport:
    """Create the flows' missing concurrency limits and check the desk's Secret blocks exist.

    Talks to the Prefect API this process is configured for (``PREFECT_API_URL``).

    Raises
    ------
    prefect.exceptions.PrefectHTTPStatusError
        The API refused a request.
    httpx.HTTPError
        The API cannot be reached.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.tasks import GLOBAL_CONCURRENCY_LIMITS, ensure_concurrency_limits

    created = ensure_concurrency_limits()
    found: list[str] = []
    missing: list[str] = []
    with get_client(sync_client=True) as client:
        for block in secret_blocks(desk, extra_secret_blocks):
            try:
                client.read_block_document_by_name(
                    block, block_type_slug="secret", include_secrets=False
                )
            except ObjectNotFound:
                missing.append(block)
            else:
                found.append(block)
    return BootstrapReport(
        tuple(created), tuple(GLOBAL_CONCURRENCY_LIMITS), tuple(found), tuple(missing)
    )
