"""Find the runnable examples in README.md and docs/*.md, run them, compare what they print.

Every fenced block is an example unless it is data: ``bash``/``sh`` blocks and blocks whose lines
start with ``$ `` are shell, ``python`` blocks are Python; ``json``, ``jsonc``, ``toml`` and the
like are data and are not run. A ``text`` (or bare) block directly after a runnable block (only
blank lines or one short lead-in line such as "Real output:" between) is that block's expected
output. Inside a ``$`` block, the lines after each ``$ command`` are its expected output.

Directives sit in an HTML comment on the line right above a block (invisible when rendered):

``<!-- doctest: skip -- why -->``
    not run (a synopsis, a fragment); the reason is required.
``<!-- doctest: exit=2 -->``
    the example must exit with this code (default 0).
``<!-- doctest: before=SHELL -->``
    run this first (e.g. ``rm -rf /tmp/pmr-tour``), so the example starts from a known state.
``<!-- doctest: background=SHELL; ready=TEXT -->``
    start this process first, wait until it prints TEXT, stop it afterwards.
``<!-- doctest: needs=postgres -->``
    runs only where ``PMR_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); skipped otherwise.

Comparison: trailing spaces are ignored, a line ``...`` in the expected text stands for any
number of lines, and durations (``42.5 ms``, ``0.8 s`` after "in") are masked because they are
the one thing a run cannot reproduce.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_PAGES = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")))
# Every page's examples are run.
DOC_FILES = ALL_PAGES

_FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*doctest:\s*(.*?)\s*-->\s*$")
_DATA_LANGS = {"json", "jsonc", "toml", "yaml", "yml", "sql", "ini", "diff"}
_SHELL_LANGS = {"bash", "sh", "shell", "console"}
_OUTPUT_LANGS = {"text", "", "output"}
_DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|µs|us)\b")
_SECONDS_AFTER_IN = re.compile(r"\bin \d+(?:\.\d+)?\s?s\b")


@dataclass
class Block:
    """One fenced block of a markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directive: str = ""
    lead_in: list[str] = field(default_factory=list)  # non-blank lines since the previous block


@dataclass
class Example:
    """A runnable example and what it must print."""

    path: Path
    line: int
    kind: str  # "shell" or "python"
    code: str
    expected: str | None
    exit_code: int = 0
    before: str | None = None
    background: str | None = None
    ready: str | None = None
    skip: str | None = None
    output_line: int | None = None  # where the expected block starts (for updates)
    needs: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """Split a markdown file into fenced blocks, with the directive above each one."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    pending_directive = ""
    lead_in: list[str] = []
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            d = _DIRECTIVE.match(lines[i])
            if d:
                pending_directive = d.group(1)
            elif lines[i].strip():
                lead_in.append(lines[i])
                pending_directive = ""
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        blocks.append(
            Block(path, start + 1, m.group(1).lower(), "\n".join(body), pending_directive, lead_in)
        )
        pending_directive, lead_in = "", []
        i += 1
    return blocks


def _options(directive: str) -> dict[str, str]:
    if directive.startswith("skip"):
        reason = directive.partition("--")[2].strip()
        return {"skip": reason or "(no reason given)"}
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in directive.split(";"))):
        key, _, value = part.partition("=")
        opts[key.strip()] = value.strip()
    return opts


def _is_prompt_block(block: Block) -> bool:
    return (
        block.lang in _OUTPUT_LANGS or block.lang in _SHELL_LANGS
    ) and block.text.lstrip().startswith("$ ")


def examples(path: Path) -> Iterator[Example]:
    """Yield the runnable examples of one markdown file, in order."""
    blocks = parse_blocks(path)
    used_as_output: set[int] = set()
    for k, b in enumerate(blocks):
        if k in used_as_output or b.lang in _DATA_LANGS:
            continue
        opts = _options(b.directive)
        if _is_prompt_block(b):
            yield from _prompt_examples(b, opts)
        elif b.lang in _SHELL_LANGS or b.lang == "python":
            kind = "python" if b.lang == "python" else "shell"
            expected, out_line = None, None
            nxt = blocks[k + 1] if k + 1 < len(blocks) else None
            if (
                nxt is not None
                and nxt.lang in _OUTPUT_LANGS
                and not _is_prompt_block(nxt)
                and len(nxt.lead_in) <= 1
                and all(len(x) < 40 for x in nxt.lead_in)
            ):
                expected, out_line = nxt.text, nxt.line
                used_as_output.add(k + 1)
            yield Example(
                path,
                b.line,
                kind,
                b.text,
                expected,
                exit_code=int(opts.get("exit", "0")),
                before=opts.get("before"),
                background=opts.get("background"),
                ready=opts.get("ready"),
                skip=opts.get("skip"),
                output_line=out_line,
                needs=opts.get("needs"),
            )
        elif b.lang not in _OUTPUT_LANGS and "skip" not in opts:
            # An unknown language is neither run nor silently ignored.
            yield Example(path, b.line, "unknown", b.text, None, skip=None)
        elif b.lang in _OUTPUT_LANGS and "skip" not in opts:
            # A lone text block: output shown without the command that printed it, or a
            # synopsis. Either way it must say why it is not checked.
            yield Example(path, b.line, "orphan", b.text, None)


def _prompt_examples(b: Block, opts: dict[str, str]) -> Iterator[Example]:
    chunks: list[tuple[str, list[str]]] = []
    for line in b.text.splitlines():
        if line.startswith("$ "):
            chunks.append((line[2:], []))
        elif chunks:
            chunks[-1][1].append(line)
    for cmd, out in chunks:
        yield Example(
            b.path,
            b.line,
            "shell",
            cmd,
            "\n".join(out),
            exit_code=int(opts.get("exit", "0")),
            before=opts.get("before"),
            background=opts.get("background"),
            ready=opts.get("ready"),
            skip=opts.get("skip"),
            needs=opts.get("needs"),
        )


def normalise(text: str) -> list[str]:
    """Lines with trailing space stripped and durations masked; no trailing blank lines."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = _DURATION.sub("<dur>", line.rstrip())
        line = _SECONDS_AFTER_IN.sub("in <dur>", line)
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` fits ``expected``, where a ``...`` line stands for any lines."""
    exp, act = normalise(expected), normalise(actual)

    def go(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i].strip() == "...":
            return any(go(i + 1, jj) for jj in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and go(i + 1, j + 1)

    return go(0, 0)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.update({"COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUTF8": "1"})
    env.pop("FORCE_COLOR", None)
    return env


# ``uv run X`` means "run X in the project's environment"; the tests already run in it, so the
# shell function runs X directly instead of asking uv to re-check the environment every time.
_SHELL_PRELUDE = 'uv() { if [ "$1" = run ]; then shift; "$@"; else command uv "$@"; fi; }\n'


def run(example: Example, *, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run one example from the repository root; return the finished process."""
    env = _env()
    if example.before:
        subprocess.run(
            ["bash", "-c", _SHELL_PRELUDE + example.before], cwd=REPO_ROOT, env=env, check=True
        )
    bg = None
    try:
        if example.background:
            bg = subprocess.Popen(
                ["bash", "-c", _SHELL_PRELUDE + "exec " + example.background],
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _wait_ready(bg, example.ready or "", timeout_s=30.0)
        if example.kind == "python":
            argv = [sys.executable, "-c", example.code]
        else:
            argv = ["bash", "-c", _SHELL_PRELUDE + "set -e\n" + example.code]
        # stderr joins stdout so the page shows the lines in the order a terminal would
        return subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
        )
    finally:
        if bg is not None:
            bg.terminate()
            try:
                bg.wait(timeout=10)
            except subprocess.TimeoutExpired:
                bg.kill()


def _wait_ready(proc: subprocess.Popen[str], ready: str, *, timeout_s: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"background process exited before {ready!r}: {''.join(seen)}")
        seen.append(line)
        if ready in line:
            return
    raise RuntimeError(f"background process did not print {ready!r} in {timeout_s} s")


def shown_output(proc: subprocess.CompletedProcess[str]) -> str:
    """What a person running the example sees (stderr is merged into stdout)."""
    return proc.stdout


def describe(example: Example) -> str:
    return f"{example.id} ({example.kind}): {shlex.quote(example.code[:60])}"
