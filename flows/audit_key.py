"""Where the desk's audit key comes from: an environment variable or a Prefect Secret block.

Core never imports Prefect (STYLE 1): this module resolves the secret and hands
``core.ledger.chain.AuditKey`` (bytes plus where they came from) to core. The CLI and the flows
both call ``resolve_audit_key``, so the rules read the same everywhere:

* ``--key-block NAME``: the Prefect Secret block ``NAME``, read through the Prefect API
  (``prefect block create secret`` or ``Secret(value=...).save(NAME)`` stores it);
* otherwise the environment variable ``--key-env`` (default ``PMR_AUDIT_KEY``);
* ``--unkeyed``: no key, said out loud. Writing without a key is refused unless asked for: an
  unkeyed trail can be re-hashed by anyone who can write to the store, which is acceptable for
  the offline demo only.

Secrets are never printed: messages name the variable or the block, and ``AuditKey`` shows a key
id instead of the value.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import ConfigError
from core.ledger.chain import DEFAULT_KEY_ENV, AuditKey

__all__ = ["key_description", "load_prefect_secret", "resolve_audit_key"]


def load_prefect_secret(block: str) -> str:
    """The string value of the Prefect Secret block named ``block``.

    Raises
    ------
    ConfigError
        No such block, the Prefect API cannot be reached, or the value is not a string.
    """
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(block)
    except ValueError:  # Prefect's "Unable to find block document named ..."
        raise ConfigError("no Prefect Secret block of that name", block=block) from None
    except Exception as exc:  # the API's own errors (connection, auth); never the value
        raise ConfigError(
            f"cannot read the Prefect Secret block: {type(exc).__name__}: {exc}", block=block
        ) from None
    if not isinstance(secret, Secret):  # a coroutine: called from inside an event loop
        raise ConfigError("read the Prefect Secret block outside async code", block=block)
    # ``Secret.get()`` would JSON-decode the text (an all-digit key would become an int).
    value = secret.value.get_secret_value()
    if not isinstance(value, str):
        raise ConfigError("the Prefect Secret block must hold a string", block=block)
    return value


def resolve_audit_key(
    *,
    key_env: str = DEFAULT_KEY_ENV,
    key_block: str | None = None,
    unkeyed: bool = False,
    required: bool,
    env: Mapping[str, str] | None = None,
) -> AuditKey | None:
    """The audit key to use, or None (unkeyed: asked for, or not ``required`` and none set).

    Parameters
    ----------
    required
        True for commands that write (appends, anchors): no key and no ``unkeyed`` is refused.

    Raises
    ------
    ConfigError
        ``unkeyed`` together with a key; no key where one is required; or a key that cannot be
        read or is too short.
    """
    from_env = AuditKey.from_env(key_env, env)
    if unkeyed:
        if key_block is not None or from_env is not None:
            given = "--key-block" if key_block is not None else f"${key_env} is set"
            raise ConfigError(f"--unkeyed cannot be combined with a key ({given})")
        return None
    if key_block is not None:
        return AuditKey.from_text(
            load_prefect_secret(key_block), source=f"Prefect Secret block {key_block!r}"
        )
    if from_env is None and required:
        raise ConfigError(
            f"no audit key: set ${key_env} (at least 32 characters, e.g. `openssl rand -hex "
            "32`) or name a Prefect Secret block with --key-block; --unkeyed writes a trail "
            "anyone with write access can re-hash (offline demo only)"
        )
    return from_env


def key_description(key: AuditKey | None, *, unkeyed: bool) -> str:
    """One line saying which key is in use, never the key itself."""
    if key is not None:
        return f"key: {key.source} (HMAC-SHA256, key id {key.key_id})"
    return "key: none (--unkeyed)" if unkeyed else "key: none"
