"""Run a solution notebook in-process, with answer cells swapped, and collect each check's verdict.

This is how the test-suite proves that the checks (visible + hidden tests) catch typical
wrong answers and accept correct alternatives, in milliseconds instead of a kernel start
per variant.  End-to-end runs through nbgrader and nbclient live in other tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402
from nbgrader import utils as nbutils  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_transform = TransformerManager().transform_cell


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


class _Verdicts:
    """``passed`` and ``failed`` from ``checks`` (test grade_id -> None when it passed, else its error)."""

    checks: dict[str, str | None]

    @property
    def passed(self) -> set[str]:
        return {k for k, v in self.checks.items() if v is None}

    @property
    def failed(self) -> set[str]:
        return {k for k, v in self.checks.items() if v is not None}


@dataclass
class Run(_Verdicts):
    """Outcome of one in-process run: failures per grade cell, the namespace, other cell errors."""

    checks: dict[str, str | None] = field(default_factory=dict)
    namespace: dict = field(default_factory=dict)
    cell_errors: list[str] = field(default_factory=list)


def load(relpath: str) -> nbformat.NotebookNode:
    """A notebook by its path relative to the repository root."""
    return nbformat.read(ROOT / relpath, as_version=4)


def run_notebook(nb: nbformat.NotebookNode, replace: dict[str, str] | None = None, stop_after: str | None = None) -> Run:
    """Execute the code cells of ``nb`` in one fresh namespace, like a kernel would.

    ``replace`` maps an answer cell's grade_id to new source (a wrong or alternative answer).
    Errors do not stop the run: every check reports.  NBGRADER_EXECUTION is set, as during
    grading, so notebooks use their quick settings.  ``stop_after`` ends the run after the
    cell with that grade_id.
    """
    replace = dict(replace or {})
    unknown = set(replace) - {grade_id(c) for c in nb.cells}
    if unknown:
        raise KeyError(f"no cell with grade_id {sorted(unknown)}")
    run = Run()
    ns: dict = {"__name__": "__main__"}
    old = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            gid = grade_id(cell)
            source = replace.get(gid, cell.source) if gid else cell.source
            error = None
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(_transform(source), f"<cell {gid or '?'}>", "exec"), ns)  # noqa: S102
            except BaseException as exc:  # noqa: BLE001 - a student's cell may raise anything
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = f"{type(exc).__name__}: {exc}"
            finally:
                plt.close("all")
            if nbutils.is_grade(cell):
                run.checks[gid] = error
            elif error:
                run.cell_errors.append(f"{gid or cell.source.splitlines()[0][:40]}: {error}")
            if stop_after and gid == stop_after:
                break
    finally:
        if old is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = old
    run.namespace = ns
    return run


@dataclass(frozen=True)
class Verdicts(_Verdicts):
    """What a run decided: each check's verdict (None: passed) and the other cells' errors."""

    checks: dict[str, str | None]
    cell_errors: list[str]


def verdicts(nb: nbformat.NotebookNode, replace: dict[str, str] | None = None, stop_after: str | None = None) -> Verdicts:
    """:func:`run_notebook`'s verdicts, computed once per test session for each notebook and answers.

    The notebook tests, the visible-catch test and the agreement test judge the same wrong and
    alternative answers; each run is kept (as JSON) in the session's folder ``ATTNKIT_VERDICTS``
    (set by conftest.py, shared by the test processes) and read back by whichever test asks next.
    """
    folder = os.environ.get("ATTNKIT_VERDICTS")
    key = hashlib.sha256(json.dumps([nbformat.writes(nb), sorted((replace or {}).items()), stop_after]).encode()).hexdigest()
    path = Path(folder) / f"{key}.json" if folder else None
    if path is not None and path.exists():
        data = json.loads(path.read_text())
        return Verdicts(data["checks"], data["cell_errors"])
    run = run_notebook(nb, replace, stop_after)
    if path is not None:
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_text(json.dumps({"checks": run.checks, "cell_errors": run.cell_errors}))
        partial.replace(path)  # whole or not at all, whichever process writes it
    return Verdicts(dict(run.checks), list(run.cell_errors))


def answer_source(nb: nbformat.NotebookNode, gid: str) -> str:
    """The source of the cell with this grade_id."""
    for cell in nb.cells:
        if grade_id(cell) == gid:
            return cell.source
    raise KeyError(gid)


def points(nb: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of every graded cell (autograded checks and written answers)."""
    return {grade_id(c): c.metadata["nbgrader"].get("points") for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


HIDDEN_MARK = "### BEGIN HIDDEN TESTS"


def visible_part(source: str) -> str:
    """A check cell as students see it: everything before the hidden tests."""
    return source.split(HIDDEN_MARK)[0]


def check_verdict(nb: nbformat.NotebookNode, replace: dict[str, str], check: str, visible_only: bool = False) -> str | None:
    """Run ``nb`` with ``replace`` up to the grade cell ``check`` and return its verdict (None: passed).

    With ``visible_only`` the check's hidden tests are left out, as in the notebook students get.
    """
    replace = dict(replace)
    if visible_only:
        replace[check] = visible_part(replace.get(check, answer_source(nb, check)))
    return verdicts(nb, replace, stop_after=check).checks[check]


def question_title(nb: nbformat.NotebookNode, gid: str) -> str:
    """The human title of a graded cell, by the course's convention.

    * A check cell (autograded code) starts with the line ``# Check: <title>``.
    * A written answer (manually graded markdown) follows a prompt cell that starts with
      ``**Written answer: <title>**``.
    """
    cells = nb.cells
    for index, cell in enumerate(cells):
        if grade_id(cell) != gid:
            continue
        if cell.cell_type == "code":
            first = cell.source.splitlines()[0] if cell.source else ""
            if first.startswith("# Check: "):
                return first[len("# Check: "):].strip()
            raise ValueError(f"{gid}: the first line is not '# Check: <title>'")
        prompt = cells[index - 1].source if index else ""
        match = __import__("re").match(r"\*\*Written answer: ([^*]+)\*\*", prompt)
        if match:
            return match.group(1).strip()
        raise ValueError(f"{gid}: the cell above does not start with '**Written answer: <title>**'")
    raise KeyError(gid)
