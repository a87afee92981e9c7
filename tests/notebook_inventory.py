"""Every notebook of the course, found on disk (so new notebooks are covered as they land), and
shared rules for the tests that run them: the start-up cell, the Colab badge, allowed errors."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import tomllib

from grading import course

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def graded():
    """grading.course's notebooks: each has a solution source and a student release."""
    return course.notebooks()


def demos() -> list[Path]:
    """Ungraded notebooks: in notebooks/ but produced by no solution (e.g. notebooks/00_demo)."""
    released = {nb.release for nb in graded()}
    return sorted(
        p for p in NOTEBOOKS.glob("*/*.ipynb") if p not in released and ".ipynb_checkpoints" not in p.parts
    )


def every_notebook() -> list[Path]:
    """Solutions, student releases and demos."""
    paths = [nb.source for nb in graded()] + [nb.release for nb in graded()] + demos()
    return sorted(set(paths))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def first_code_cell(nb: nbformat.NotebookNode):
    return next(c for c in nb.cells if c.cell_type == "code")


def startup_block(source: str) -> str:
    """The lines of the start-up cell from its first line up to the ``%pip install`` line (inclusive):
    the part that must be identical in every notebook."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("%pip install"):
            return "\n".join(lines[: i + 1])
    raise AssertionError("the start-up cell has no `%pip install` line")


def course_repo(source: str) -> str:
    match = re.search(r'^COURSE_REPO = "([^"]+)"$', source, flags=re.M)
    assert match, "the start-up cell defines no COURSE_REPO = \"...\""
    return match.group(1)


def public_path(path: Path) -> str:
    """Where students open a notebook: solutions/<a>/<f> is released as notebooks/<a>/<f>."""
    parts = path.relative_to(ROOT).parts
    return "/".join(("notebooks",) + parts[1:])


_NAME_ERROR = re.compile(r"name '([A-Za-z_][A-Za-z0-9_]*)' is not defined")


def unexpected_errors(nb: nbformat.NotebookNode) -> list[str]:
    """Errors in an executed notebook that are not a student stub's NotImplementedError.

    A NameError is a stub's consequence, not a bug, when the undefined name appears in an earlier
    code cell that itself stopped with NotImplementedError (e.g. a check cell reading an answer
    variable the stub never assigned).
    """
    stub_sources: list[str] = []
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if out.ename == "NotImplementedError":
                stub_sources.append(cell.source)
                continue
            name = _NAME_ERROR.search(out.evalue or "")
            if out.ename == "NameError" and name and any(
                re.search(rf"\b{re.escape(name.group(1))}\b", src) for src in stub_sources
            ):
                continue
            first = cell.source.strip().splitlines()[0][:70] if cell.source.strip() else ""
            problems.append(f"cell {index} ({first!r}): {out.ename}: {out.evalue}")
    return problems
