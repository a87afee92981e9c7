"""Grade one notebook: student cells in the sandboxed runner, grade cells in the trusted process.

``grade_notebook(runner, nb)`` takes a *graded notebook*: the source notebook's structure
(set-up, locked and grade cells with their hidden tests, from solutions/) with the student's
answers in the answer cells (see :mod:`grading.intake`). It returns one
:class:`QuestionResult` per grade cell plus what happened on the way.
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import dataclass, field

import nbformat
from nbgrader import utils as nbutils

from grading.remote import CellRun, Runner, RunnerError, TrustedNamespace, run_grade_cell

HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)


@dataclass
class Budget:
    cell_seconds: float = 60.0  # wall clock for one cell (student cell or grade cell)
    notebook_seconds: float = 600.0  # wall clock for the whole notebook


@dataclass
class QuestionResult:
    grade_id: str
    points: float
    score: float | None  # None for a manually graded answer
    status: str  # "graded", "manual" or "error"
    message: str = ""  # the failure in words (assertion message), or why it could not be graded
    output: str = ""  # what the visible checks printed


@dataclass
class NotebookResult:
    questions: list[QuestionResult] = field(default_factory=list)
    cell_errors: list[str] = field(default_factory=list)  # student cells that raised (kept short)
    tampering: list[str] = field(default_factory=list)
    fatal: str = ""  # the runner died or the budget ran out
    seconds: float = 0.0


def visible_part(source: str) -> str:
    """A grade cell as students see it: the hidden tests removed (nbgrader's ClearHiddenTests)."""
    return HIDDEN_TESTS.sub("", source)


def is_trusted(cell) -> bool:
    """Locked code cells that are not grade cells: set-up and given code, restored from the source."""
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("locked", False) and not meta.get("grade", False) and not meta.get("solution", False)


# Tampering: code that rebinds the machinery checks rely on. The verdicts do not depend on the
# student's process, so this changes no score; it is reported so the instructor can look.
_PATCH_TARGETS = ("torch", "np", "numpy", "builtins", "__builtins__", "sys", "attnkit", "math", "warnings", "nn", "F")
_SUSPICIOUS_CALLS = {"set_custom_exc", "register", "setattr", "reload", "excepthook", "settrace", "setprofile"}


def scan_for_tampering(source: str) -> list[str]:
    """Static look at a student cell for monkeypatching of torch, builtins, sys or IPython hooks."""
    try:
        tree = ast.parse(_strip_magics(source))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute):
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in _PATCH_TARGETS:
                    found.append(f"assigns {ast.unparse(target)} (line {node.lineno})")
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id == "__builtins__":
                found.append(f"assigns {ast.unparse(target)} (line {node.lineno})")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _SUSPICIOUS_CALLS:
                text = ast.unparse(node)
                if name != "register" or "events" in text:
                    if name != "setattr" or any(t in text.split(",")[0] for t in _PATCH_TARGETS):
                        found.append(f"calls {text[:80]} (line {node.lineno})")
    return found


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _points(cell) -> float:
    return float(cell.metadata.get("nbgrader", {}).get("points", 0) or 0)


def _short(ename: str, evalue: str) -> str:
    text = f"{ename}: {evalue}".strip() if evalue else ename
    return text if len(text) <= 600 else text[:600] + " ..."


def grade_notebook(runner: Runner, nb: nbformat.NotebookNode, budget: Budget = Budget()) -> NotebookResult:
    """Run ``nb`` (a graded notebook) and score each grade cell; never raises for student faults."""
    result = NotebookResult()
    start = time.monotonic()
    ns = TrustedNamespace()
    grade_cells = [c for c in nb.cells if nbutils.is_grade(c)]
    done: set[str] = set()
    try:
        runner.begin()
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader", {})
            gid = meta.get("grade_id", f"cell-{index}")
            if cell.cell_type == "markdown":
                if nbutils.is_grade(cell):  # a written answer: a human grades it
                    result.questions.append(QuestionResult(gid, _points(cell), None, "manual"))
                    done.add(gid)
                continue
            if cell.cell_type != "code":
                continue
            left = budget.notebook_seconds - (time.monotonic() - start)
            if left <= 0:
                raise RunnerError("timeout", f"the notebook's time limit ({budget.notebook_seconds:.0f} s) ran out")
            timeout = min(budget.cell_seconds, left)
            if nbutils.is_grade(cell):
                # Students' view first (keeps the sandbox's state as in a normal run), then the verdict here.
                runner.request({"op": "exec", "source": visible_part(cell.source)}, timeout)
                verdict = run_grade_cell(runner, ns, cell.source, timeout)
                result.questions.append(
                    QuestionResult(
                        gid, _points(cell), _points(cell) if verdict.ok else 0.0, "graded",
                        "" if verdict.ok else _short(verdict.ename, verdict.evalue), verdict.stdout[-4000:],
                    )
                )
                done.add(gid)
                continue
            if not is_trusted(cell):
                result.tampering += [f"{gid}: {t}" for t in scan_for_tampering(cell.source)]
            reply = runner.request({"op": "exec", "source": cell.source}, timeout)
            if not reply.get("ok", False):
                result.cell_errors.append(f"{gid}: {_short(reply.get('ename', ''), reply.get('evalue', ''))}")
            if is_trusted(cell):
                try:
                    ns.run_trusted(cell.source)
                except Exception as exc:  # our own code failed: the set-up itself is broken
                    raise RunnerError("trusted cell failed", f"{gid}: {type(exc).__name__}: {exc}") from exc
        runner.end()
    except RunnerError as exc:
        reason = {"timeout": "time limit exceeded", "kernel died": "the kernel died"}.get(exc.reason, exc.reason)
        detail = str(exc).split(": ", 1)[1] if ": " in str(exc) else ""
        result.fatal = f"{reason}{f' ({detail})' if detail else ''}"
        for cell in grade_cells:
            gid = cell.metadata["nbgrader"]["grade_id"]
            if gid not in done:
                manual = cell.cell_type == "markdown"
                result.questions.append(
                    QuestionResult(gid, _points(cell), None if manual else 0.0, "manual" if manual else "error",
                                   "" if manual else f"not graded: {result.fatal} before this check ran")
                )
    result.seconds = time.monotonic() - start
    return result
