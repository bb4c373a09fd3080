"""PostgreSQL: the schema a store lives in, as named by the URL's ``search_path``.

The docs' URL ``...?options=-csearch_path%3Dpmr`` puts the store in schema ``pmr``. PostgreSQL
does not create that schema: with none of ``search_path`` existing, ``current_schema()`` is
NULL and ``CREATE TABLE`` fails with "no schema has been selected to create in". ``pmr db
init`` creates it; everything else (``upgrade``, ``info``) refuses and says so.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from core.errors import ConfigError

__all__ = ["db_error_reason", "ensure_search_path_schema", "parse_search_path"]

_SEARCH_PATH_ITEM = re.compile(r'\s*(?:"(?P<quoted>(?:[^"]|"")*)"|(?P<plain>[^",\s]+))\s*(?:,|$)')


def db_error_reason(exc: DBAPIError) -> str:
    """The driver's reason for ``exc``, first line only (no SQL, no parameters)."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__


def parse_search_path(value: str) -> list[str]:
    """Split PostgreSQL's ``SHOW search_path`` into schema names, as PostgreSQL reads them.

    Quoted names keep their case (``""`` is a quote); unquoted ones fold to lower case.

    Examples
    --------
    >>> parse_search_path('"$user", public')
    ['$user', 'public']
    >>> parse_search_path('"Desk ""A"" 1", Pmr_Ops')
    ['Desk "A" 1', 'pmr_ops']
    """
    names: list[str] = []
    pos = 0
    while pos < len(value.rstrip()):
        match = _SEARCH_PATH_ITEM.match(value, pos)
        if match is None or match.end() == pos:
            raise ConfigError("cannot read search_path", search_path=value)
        quoted, plain = match.group("quoted"), match.group("plain")
        names.append(quoted.replace('""', '"') if quoted is not None else plain.lower())
        pos = match.end()
    return names


def ensure_search_path_schema(conn: Connection, *, create: bool) -> str | None:
    """Make sure PostgreSQL has a schema to put the store in; return a note if one was created.

    PostgreSQL creates tables in the first schema of ``search_path`` that exists; when none
    does (``current_schema()`` is NULL), the URL's ``options=-csearch_path=NAME`` names a
    schema that was never created. ``init`` creates it (quoted, so any name is safe);
    ``upgrade`` and reads refuse. A path starting with ``$user`` is never created: that
    idiom means "a schema per role", which is the DBA's decision.

    Raises
    ------
    ConfigError
        No usable schema and ``create`` is false, the path starts with ``$user`` or is empty,
        or the role may not create schemas (the message gives the statement to ask for).
    """
    if conn.execute(text("SELECT current_schema()")).scalar() is not None:
        return None
    shown = str(conn.execute(text("SHOW search_path")).scalar_one())
    names = parse_search_path(shown)
    if not names or names[0] == "$user":
        raise ConfigError(
            "no schema of the search_path exists; name one in the URL, e.g. "
            "?options=-csearch_path%3Dpmr",
            search_path=shown,
        )
    prep = conn.dialect.identifier_preparer
    quoted = prep.quote_identifier(names[0])
    if not create:
        raise ConfigError(
            f"schema {quoted} (first in search_path) does not exist; `pmr db init` creates it"
        )
    role = prep.quote_identifier(str(conn.execute(text("SELECT current_user")).scalar_one()))
    try:
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    except DBAPIError as exc:
        raise ConfigError(
            f"schema {quoted} does not exist and cannot be created: {db_error_reason(exc)}; "
            f"an administrator can run: CREATE SCHEMA {quoted} AUTHORIZATION {role}"
        ) from None
    return f"created schema {quoted} (first in search_path)"
