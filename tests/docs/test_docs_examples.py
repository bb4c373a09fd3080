"""Every example in README.md and docs/*.md runs as written and prints what the page shows.

The pages are the user's manual; an example that drifted from the code is a bug in one of the
two. ``PMR_DOCS_UPDATE=1 uv run pytest tests/docs`` rewrites the expected-output blocks that no
longer match with what the commands print now (then read the diff before committing it).
"""

from __future__ import annotations

import os
import re

import pytest
from doc_blocks import (
    ALL_PAGES,
    DOC_FILES,
    REPO_ROOT,
    Example,
    examples,
    matches,
    normalise,
    parse_blocks,
    run,
    shown_output,
)

ALL = [ex for path in DOC_FILES for ex in examples(path)]
UPDATE = os.environ.get("PMR_DOCS_UPDATE") == "1"


def _replace_block(ex: Example, actual: str) -> None:
    """Rewrite the output block that follows ``ex``'s code block (found by its text, since
    earlier rewrites in the same run may have moved it)."""
    blocks = parse_blocks(ex.path)
    k = next(i for i, b in enumerate(blocks) if b.text == ex.code)
    target = blocks[k + 1]
    lines = ex.path.read_text(encoding="utf-8").split("\n")
    start = target.line  # 1-based fence line -> 0-based first body line
    end = start
    while lines[end].strip() != "```":
        end += 1
    lines[start:end] = normalise(actual)
    ex.path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.parametrize("example", ALL, ids=[ex.id for ex in ALL])
def test_doc_example_with_shown_output_runs_as_written(example: Example) -> None:
    if example.kind == "orphan":
        pytest.fail(
            f"{example.id}: a text block with no command before it; put it right after the "
            "example that prints it, or mark it <!-- doctest: skip -- why -->"
        )
    if example.kind == "unknown":
        pytest.fail(f"{example.id}: unknown block language; mark it skip with a reason")
    if example.skip is not None:
        assert example.skip != "(no reason given)", f"{example.id}: a skip needs a reason"
        pytest.skip(example.skip)
    if example.needs == "postgres" and not os.environ.get("PMR_TEST_POSTGRES_URL"):
        pytest.skip("needs PostgreSQL: set PMR_TEST_POSTGRES_URL (.ci/run does)")
    proc = run(example)
    actual = shown_output(proc)
    assert proc.returncode == example.exit_code, (
        f"{example.id} exited {proc.returncode}, expected {example.exit_code}:\n{actual}"
    )
    if example.expected is None:
        return
    if not matches(example.expected, actual):
        if UPDATE and example.output_line is not None:
            _replace_block(example, actual)
            pytest.skip("expected output rewritten (PMR_DOCS_UPDATE=1)")
        assert "\n".join(normalise(actual)) == "\n".join(normalise(example.expected)), (
            f"{example.id}: output differs from the page"
        )


def test_readme_links_to_every_docs_page() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"


def test_doc_links_point_at_files_that_exist() -> None:
    link = re.compile(r"\]\(((?!https?://|#)[^)#\s]+)(?:#[^)]*)?\)")
    for path in ALL_PAGES:
        for target in link.findall(path.read_text(encoding="utf-8")):
            assert (path.parent / target).exists() or (REPO_ROOT / target).exists(), (
                f"{path.name} links to a missing file: {target}"
            )


def test_readme_is_a_front_door_not_a_manual() -> None:
    # The issue asked for about a tenth of the old 77 KB manual; the reference lives in docs/.
    assert len((REPO_ROOT / "README.md").read_bytes()) < 16_000
