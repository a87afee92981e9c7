"""Which course notebook a file is, from its content: its answer and locked cells, not its name.

Each graded notebook has a *signature*: its nbgrader grade_ids and the lines of its released,
non-answer cells (instructions, locked code, visible checks), keeping only lines of some length
that no other notebook has (notebook 02 ships 01's code as given cells; those lines count for
neither).  A file's score for a notebook is the share of that signature it contains; ``.ipynb``
files are read as JSON (grade_ids and cell sources), anything else (a Colab ``.py``) as text.

:func:`identify` returns the best match when it is clear (a share of at least
:data:`MIN_SHARE` and well ahead of the runner-up), else None: an unreadable or unrelated file is
"unknown", never guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nbformat

from grading import course

MIN_SHARE = 0.3  # share of a notebook's signature a file must contain to be recognised as it
MIN_LINE = 20  # characters: shorter lines are too common to tell notebooks apart
MAX_BYTES = 16 * 1024**2  # larger files are not inspected (intake, in its bounded child, deals with them)


def _norm_line(line: str) -> str:
    line = re.sub(r'^[\s#"\']+|[\s"\']+$', "", line)
    return " ".join(line.split())


def _lines(text: str) -> set[str]:
    return {n for n in (_norm_line(line) for line in text.splitlines()) if len(n) >= MIN_LINE}


@dataclass(frozen=True)
class Signature:
    notebook: course.Notebook
    grade_ids: frozenset[str]
    lines: frozenset[str]

    @property
    def size(self) -> int:
        return len(self.grade_ids) + len(self.lines)


def _released(nb: course.Notebook) -> tuple[set[str], set[str]]:
    path = nb.release if nb.release.exists() else nb.source
    notebook = nbformat.read(path, as_version=4)
    ids, lines = set(), set()
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id"):
            ids.add(meta["grade_id"])
        if meta.get("solution"):
            continue  # what students write differs from one to the next
        lines |= _lines(cell.source)
    return ids, lines


@lru_cache(maxsize=8)
def _signatures(root: str) -> tuple[Signature, ...]:  # noqa: ARG001 - cache key: the course
    raw = {nb: _released(nb) for nb in course.notebooks()}
    sigs = []
    for nb, (ids, lines) in raw.items():
        other_ids = set().union(*(i for o, (i, _) in raw.items() if o != nb)) if len(raw) > 1 else set()
        other_lines = set().union(*(ls for o, (_, ls) in raw.items() if o != nb)) if len(raw) > 1 else set()
        sigs.append(Signature(nb, frozenset(ids - other_ids), frozenset(lines - other_lines)))
    return tuple(sigs)


def signatures() -> tuple[Signature, ...]:
    return _signatures(str(course.root()))


def _content(path: Path) -> tuple[set[str], set[str]] | None:
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if path.suffix.lower() == ".ipynb":
        try:
            data = json.loads(text)
        except RecursionError:
            return None  # nested too deeply: intake reports it
        except ValueError:
            return set(), _lines(text.replace("\\n", "\n"))  # a truncated file: its text still tells
        cells = data.get("cells") if isinstance(data, dict) else None
        if not isinstance(cells, list):
            return None
        ids, lines = set(), set()
        for cell in cells:
            if not isinstance(cell, dict):
                continue
            source = cell.get("source", "")
            source = "".join(x for x in source if isinstance(x, str)) if isinstance(source, list) else str(source)
            lines |= _lines(source)
            meta = cell.get("metadata")
            gid = meta.get("nbgrader", {}).get("grade_id") if isinstance(meta, dict) and isinstance(meta.get("nbgrader"), dict) else None
            if isinstance(gid, str):
                ids.add(gid)
        return ids, lines
    return set(), _lines(text)


def shares(path: Path) -> dict[course.Notebook, float]:
    """Share of each notebook's signature found in ``path`` (empty when unreadable)."""
    content = _content(Path(path))
    if content is None:
        return {}
    ids, lines = content
    return {s.notebook: (len(s.grade_ids & ids) + len(s.lines & lines)) / s.size for s in signatures() if s.size}


@dataclass(frozen=True)
class Match:
    notebook: course.Notebook
    share: float
    runner_up: float

    def describe(self) -> str:
        return f"{self.share:.0%} of {self.notebook.assignment}/{self.notebook.name}'s locked and answer cells"


def identify(path: Path) -> Match | None:
    """The notebook ``path`` clearly is, or None (unknown, unreadable or unclear)."""
    found = sorted(shares(path).items(), key=lambda kv: -kv[1])
    if not found or found[0][1] < MIN_SHARE:
        return None
    runner_up = found[1][1] if len(found) > 1 else 0.0
    if found[0][1] < 2 * runner_up:
        return None
    return Match(found[0][0], found[0][1], runner_up)


def wrong_reason(filename: str, real: course.Notebook, named: str, evidence: str, left_out: bool) -> str:
    """One wording for a file handed in as notebook ``named`` that holds ``real`` (autograde and collect alike)."""
    then = f"left out: {real.name} was handed in too" if left_out else f"graded as {real.name}"
    return f"`{filename}` is notebook {real.assignment}/{real.name} ({evidence}), not {named}; {then}"


def graded_as_note(named: str, filename: str, real: course.Notebook) -> str:
    return f"handed in as {named} (`{filename}`); recognised by its content as {real.name}"


def wrong_notebook(path: Path, expected: course.Notebook) -> Match | None:
    """The other notebook ``path`` is, when its content says it is not ``expected``; else None."""
    match = identify(path)
    if match is None or match.notebook == expected:
        return None
    if shares(path).get(expected, 0.0) >= MIN_SHARE:
        return None  # it has much of the expected notebook too: trust its place
    return match
