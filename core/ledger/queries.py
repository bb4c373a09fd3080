"""Loader for the named SQL in ``sql/``: ``-- name:`` blocks, each with a ``-- why:`` line.

Why SQL files and not query builders: post-mortem queries and views are read by people who
know SQL and not our Python, and they run unchanged in ``psql``. The format is aiosql's
(``docs/source/defining-sql-queries.rst``) reduced to what we use: a block starts at
``-- name: <identifier>``, its leading comment lines are documentation and must include a
``-- why:`` line saying what question the query answers, and the rest up to the next
``-- name:`` is one SQL statement with ``:param`` placeholders.

Examples
--------
>>> qs = parse_named_queries('''
... -- name: open_calls
... -- why: what is still being cured
... SELECT id FROM margin_call WHERE status = :status;
... ''', "example.sql")
>>> qs["open_calls"].sql
'SELECT id FROM margin_call WHERE status = :status'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, text
from sqlmodel import Session

from core.errors import ConfigError

__all__ = ["SQL_DIR", "NamedQuery", "load_queries", "parse_named_queries", "run_query"]

#: ``sql/`` at the repository root, next to ``core/``.
# A wheel carries sql/ inside the package (pyproject's force-include); a checkout has it at the
# top level, where the product owner's layout puts it.
_PACKAGED_SQL = Path(__file__).resolve().parent / "sql"
SQL_DIR = _PACKAGED_SQL if _PACKAGED_SQL.is_dir() else Path(__file__).resolve().parents[2] / "sql"

_NAME_RE = re.compile(r"^--\s*name:\s*(?P<name>\S+)\s*$")
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """One named statement: its name, the reason it exists, the SQL and where it came from."""

    name: str
    why: str
    sql: str
    source: str  # "path:line" of the ``-- name:`` header

    @property
    def statement(self) -> TextClause:
        return text(self.sql)


def _finish(name: str, line_no: int, body: list[str], source: str) -> NamedQuery:
    where = f"{source}:{line_no}"
    doc: list[str] = []  # comment lines after "--", unstripped, so indentation is kept
    i = 0
    while i < len(body) and (body[i].lstrip().startswith("--") or not body[i].strip()):
        if body[i].strip():
            doc.append(body[i].lstrip()[2:])
        i += 1
    why = ""
    for j, line in enumerate(doc):
        if line.strip().startswith("why:"):
            parts = [line.strip()[len("why:") :].strip()]
            # An indented comment line continues the "why" (see sql/views.sql).
            parts += [c.strip() for c in _continuation(doc[j + 1 :])]
            why = " ".join(p for p in parts if p)
            break
    if not why:
        raise ConfigError("named query has no '-- why:' line", query=name, where=where)
    sql = "\n".join(body[i:]).strip().rstrip(";").strip()
    if not sql:
        raise ConfigError("named query has no SQL", query=name, where=where)
    return NamedQuery(name=name, why=why, sql=sql, source=where)


def _continuation(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.startswith("  "):
            break
        out.append(line)
    return out


def parse_named_queries(sql_text: str, source: str) -> dict[str, NamedQuery]:
    """Split ``sql_text`` into its ``-- name:`` blocks.

    Raises
    ------
    ConfigError
        A name that is not a lower-case identifier, a duplicate name, a block without a
        ``-- why:`` line or without SQL; the error names the file and line.
    """
    queries: dict[str, NamedQuery] = {}
    current: tuple[str, int] | None = None
    body: list[str] = []
    for line_no, line in enumerate(sql_text.splitlines(), start=1):
        match = _NAME_RE.match(line.strip())
        if match is None:
            if current is not None:
                body.append(line)
            continue
        if current is not None:
            q = _finish(current[0], current[1], body, source)
            queries[q.name] = q
        name = match["name"]
        if not _IDENT_RE.match(name):
            raise ConfigError(
                "query name must be a lower-case identifier",
                query=name,
                where=f"{source}:{line_no}",
            )
        if name in queries:
            raise ConfigError("duplicate query name", query=name, where=f"{source}:{line_no}")
        current, body = (name, line_no), []
    if current is not None:
        q = _finish(current[0], current[1], body, source)
        queries[q.name] = q
    return queries


def load_queries(directory: Path | None = None) -> dict[str, NamedQuery]:
    """Load every ``*.sql`` file under ``directory`` (default ``sql/queries``) by query name.

    Raises
    ------
    ConfigError
        The directory is missing, or a name is defined twice across files.
    """
    root = SQL_DIR / "queries" if directory is None else directory
    if not root.is_dir():
        raise ConfigError("named-query directory not found", path=str(root))
    out: dict[str, NamedQuery] = {}
    for path in sorted(root.glob("*.sql")):
        for name, q in parse_named_queries(path.read_text(encoding="utf-8"), str(path)).items():
            if name in out:
                raise ConfigError(
                    "duplicate query name across files",
                    query=name,
                    first=out[name].source,
                    second=q.source,
                )
            out[name] = q
    return out


def run_query(session: Session, query: NamedQuery, **params: Any) -> list[dict[str, Any]]:
    """Execute ``query`` with ``params`` and return its rows as dicts (column name → value)."""
    result = session.connection().execute(query.statement, params)
    return [dict(row) for row in result.mappings()]
