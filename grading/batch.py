"""Grade a class: find the submissions, grade them in parallel, write every output (one writer).

``python -m grading autograde SUBMITTED --out OUT [--workers N] [--db PATH]``

* ``SUBMITTED/<student_id>/<assignment_id>/<notebook>.ipynb`` (nbgrader's layout); a ``.py`` with
  the same stem is accepted in its place; a single file whose name merely contains the stem
  (``Copy of scoring_functions.ipynb``) is accepted when the exact name is missing.
* Workers: a ``ProcessPoolExecutor`` (default: one per core) runs
  :func:`grading.autograde.grade_submission`; the parent alone writes ``OUT/grades.csv``,
  ``OUT/feedback/``, ``OUT/report``, ``OUT/results/`` (one JSON per submission) and the
  gradebook.  A worker that dies (a submission killing its grader) costs only the submissions it
  held: they are retried one by one in fresh processes and, if they kill that too, marked
  ``error``.
* The submitted files are hashed before and after: they are only ever read.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading import course, feedback
from grading.autograde import GradeOptions, GradeTask, QuestionResult, SubmissionResult, fingerprint, grade_submission, sha256
from grading.gradebook import (
    HEADER,
    GradebookWriter,
    autograded_dir_for,
    db_url_for,
    fmt,
    record_assignment,
    write_formgrader_config,
)
from grading.template import load_template


class NothingToGrade(ValueError):
    """SUBMITTED holds nothing in nbgrader's layout (a usage error)."""


@dataclass
class Missing:
    student_id: str
    assignment: str
    notebook: str


@dataclass
class Discovery:
    tasks: list[GradeTask] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)  # notebooks of a submitted assignment not handed in
    ignored: list[str] = field(default_factory=list)  # files/folders that are not part of the course


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def _read_timestamp(folder: Path) -> str | None:
    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        text = stamp.read_text(errors="replace").strip()
        return text or None
    return None


def discover(submitted: Path, options: GradeOptions, assignments: list[str] | None = None,
             students: list[str] | None = None) -> Discovery:
    found = Discovery()
    by_assignment: dict[str, list[course.Notebook]] = {}
    for nb in course.notebooks():
        by_assignment.setdefault(nb.assignment, []).append(nb)
    for student_dir in sorted(p for p in Path(submitted).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if students and student_dir.name not in students:
            continue
        for adir in sorted(p for p in student_dir.iterdir() if not p.name.startswith(".")):
            if not adir.is_dir():
                found.ignored.append(f"{adir}: not an assignment folder")
                continue
            if adir.name not in by_assignment:
                found.ignored.append(f"{adir}: unknown assignment `{adir.name}`")
                continue
            if assignments and adir.name not in assignments:
                continue
            files = [p for p in adir.iterdir() if p.is_file() and p.suffix.lower() in (".ipynb", ".py")]
            claimed: set[Path] = set()
            for nb in by_assignment[adir.name]:
                exact = [adir / f"{nb.name}.ipynb", adir / f"{nb.name}.py"]
                path = next((p for p in exact if p.is_file()), None)
                note = None
                if path is not None and exact[0].is_file() and exact[1].is_file():
                    note = f"both {nb.name}.ipynb and {nb.name}.py were handed in: graded the .ipynb"
                if path is None:
                    loose = [p for p in files if _norm(nb.name) in _norm(p.stem) and p not in claimed]
                    if len(loose) == 1:
                        path = loose[0]
                        note = f"file `{path.name}` graded as {nb.name}"
                if path is None:
                    found.missing.append(Missing(student_dir.name, adir.name, nb.name))
                    continue
                claimed.update(p for p in exact if p.is_file())
                claimed.add(path)
                found.tasks.append(GradeTask(
                    student_dir.name, adir.name, nb.name, str(path.resolve()), str(nb.source),
                    options, _read_timestamp(adir), note,
                ))
            for p in files:
                if p not in claimed:
                    found.ignored.append(f"{p}: not a notebook of {adir.name}")
    return found


# --------------------------------------------------------------------------------------------
# progress


class Progress:
    """A one-line bar on a terminal; plain lines (every ~10 %) otherwise."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.last_plain = -1

    def begin(self) -> None:
        if self.enabled and self.total:
            text = f"grading [{'.' * 28}] 0/{self.total}" if self.tty else f"grading: {self.total} submission(s)\n"
            self.stream.write(("\r" if self.tty else "") + text)
            self.stream.flush()

    def update(self, label: str) -> None:
        self.done += 1
        if not self.enabled or not self.total:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        frac = self.done / self.total
        if self.tty:
            width = 28
            bar = "#" * int(frac * width) + "." * (width - int(frac * width))
            line = f"\rgrading [{bar}] {self.done}/{self.total} {frac:4.0%} {elapsed:5.0f}s eta {eta:4.0f}s  {label[:40]:<40}"
            self.stream.write(line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            step = max(1, self.total // 10)
            if self.done == self.total or self.done // step != self.last_plain:
                self.last_plain = self.done // step
                self.stream.write(f"grading: {self.done}/{self.total} ({frac:.0%}) {elapsed:.0f}s elapsed, eta {eta:.0f}s; last: {label}\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------
# running


def _crashed(task: GradeTask, reason: str) -> SubmissionResult:
    template = load_template(Path(task.source), task.assignment, task.notebook)
    result = SubmissionResult(task.student_id, task.assignment, task.notebook, task.submission, timestamp=task.timestamp)
    result.error = reason
    result.questions = [
        QuestionResult(p.grade_id, p.graded_by, p.points or 0.0, 0.0, "error", f"not graded: {reason}",
                       answer=p.answer if p.kind == "test" else p.grade_id)
        for p in template.questions
    ]
    return result


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def run_tasks_dask(tasks: list[GradeTask], scheduler: str, on_result) -> None:
    """Grade ``tasks`` on a Dask cluster (``scheduler``: its address, e.g. ``tcp://10.0.0.5:8786``).

    Each task is the same pure ``grade_submission`` call as locally, so the sandbox and the
    trusted verdicts apply on every worker (each worker process keeps its own warm runner).
    Workers need this project's environment, bubblewrap, and the submissions and solutions at
    the same paths (a shared file system, as on a Slurm cluster). Results come back here, and
    this process stays the single writer of every output.
    """
    from distributed import Client, as_completed

    with Client(scheduler, timeout="60s") as client:
        futures = {client.submit(grade_submission, task, pure=False, retries=1): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker or a bug must not stop the class
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                result = _crashed(task, f"the Dask worker failed: {detail}")
            on_result(result)


def run_tasks(tasks: list[GradeTask], workers: int, on_result) -> None:
    """Grade ``tasks`` with ``workers`` processes (0: in this process), calling ``on_result`` in order of completion."""
    if workers <= 0:
        for task in tasks:
            try:
                on_result(grade_submission(task))
            except Exception as exc:  # noqa: BLE001
                on_result(_crashed(task, f"internal grader error: {type(exc).__name__}: {exc}"))
        return
    attempts: dict[tuple, int] = {}
    pending, isolate = list(tasks), []
    while pending:
        pool = _pool(min(workers, len(pending)))
        futures = {pool.submit(grade_submission, t): t for t in pending}
        broken = []
        try:
            for future in cf.as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except cf.process.BrokenProcessPool:
                    broken.append(task)  # the pool died: this one and every unfinished one
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug must not stop the class
                    detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    result = _crashed(task, f"internal grader error: {detail}")
                on_result(result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        pending = []
        for task in broken:  # retry once with the others, then alone
            attempts[task.key] = attempts.get(task.key, 0) + 1
            (isolate if attempts[task.key] >= 2 else pending).append(task)
    for task in isolate:  # alone, in a fresh process: a death now is this submission's doing
        pool = _pool(1)
        try:
            result = pool.submit(grade_submission, task).result()
        except cf.process.BrokenProcessPool:
            result = _crashed(task, "the grading process died while running this submission (did it kill its parent?)")
        except Exception as exc:  # noqa: BLE001
            result = _crashed(task, f"internal grader error: {type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        on_result(result)


# --------------------------------------------------------------------------------------------
# outputs


def _rows(result: SubmissionResult) -> list[list[str]]:
    return [
        [result.student_id, result.assignment, result.notebook, q.grade_id,
         "" if q.status == "manual" else fmt(q.score if q.score is not None else 0), fmt(q.max_score), q.status]
        for q in result.questions
    ]


def _missing_result(m: Missing) -> SubmissionResult:
    nb = next(n for n in course.notebooks(m.assignment) if n.name == m.notebook)
    result = _crashed(GradeTask(m.student_id, m.assignment, m.notebook, "", str(nb.source)), "notebook not handed in")
    result.submission = f"(missing) {m.notebook}.ipynb"
    return result


def _placeholder_notebook(result: SubmissionResult) -> str:
    nb = next(n for n in course.notebooks(result.assignment) if n.name == result.notebook)
    template = load_template(nb.source, result.assignment, result.notebook)
    notebook = template.fresh_notebook()
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Not graded automatically:** {result.error}"))
    return nbformat.writes(notebook)


def write_report(path: Path, results: list[SubmissionResult], header: list[str]) -> None:
    lines = list(header)
    for r in results:
        status = "ERROR" if r.error else ("graded with errors" if r.has_errors else "graded")
        manual = sum(q.max_score for q in r.questions if q.status == "manual")
        score = f"{fmt(sum(q.score or 0 for q in r.questions if q.status != 'manual'))}/{fmt(r.max_score - manual)}"
        if manual:
            score += f" (+{fmt(manual)} to grade by hand)"
        took = r.timings.get("total")
        lines += ["", f"== {r.student_id} / {r.assignment} / {r.notebook}: {score}  [{status}]" + (f"  {took:.1f}s" if took else "")]
        lines.append(f"   file: {r.submission}" + (f"  ({r.format})" if r.format else ""))
        if r.error:
            lines.append(f"   could not be graded: {r.error}")
        for repair in r.repairs:
            lines.append(f"   repaired: {repair}")
        for event in r.events:
            lines.append(f"   execution: {event}")
        for q in r.questions:
            if q.status == "manual":
                continue
            if q.status == "error" or (q.score or 0) < q.max_score:
                lines.append(f"   {q.grade_id}: {fmt(q.score or 0)}/{fmt(q.max_score)} [{q.status}] {q.reason}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class ClassSummary:
    submissions: int
    students: int
    graded: int
    repaired: int
    errors: int
    seconds: float
    workers: int
    results: list[SubmissionResult]
    changed_files: list[str]
    reused: int = 0  # finished by an earlier, interrupted run

    def line(self) -> str:
        per = self.seconds / self.submissions if self.submissions else 0
        how = f"{self.workers} worker(s)" if self.workers else "in-process"
        return (f"{self.submissions} submission(s) from {self.students} student(s) in {self.seconds:.1f}s "
                f"({per:.1f}s per submission, {how}): {self.graded} graded, "
                f"{self.repaired} repaired, {self.errors} with errors"
                + (f", {self.reused} reused from an interrupted run" if self.reused else ""))


def autograde_class(submitted: Path, out: Path, workers: int | None = None, db: str | None = None,
                    options: GradeOptions | None = None, assignments: list[str] | None = None,
                    students: list[str] | None = None, progress: bool = True, log=None,
                    resume: bool = True, scheduler: str | None = None) -> ClassSummary:
    log = log or sys.stderr
    start = time.perf_counter()
    options = options or GradeOptions()
    workers = (os.cpu_count() or 1) if workers is None else workers
    submitted, out = Path(submitted).resolve(), Path(out).resolve()
    found = discover(submitted, options, assignments, students)
    if not found.tasks and not found.missing:
        raise NothingToGrade(
            f"no submissions in {submitted}: expected {submitted}/<student_id>/<assignment_id>/<notebook>.ipynb (or .py)"
            + (f"; ignored: {'; '.join(found.ignored[:5])}" if found.ignored else "")
        )
    db_url = db_url_for(db)
    autograded = autograded_dir_for(db_url)
    out.mkdir(parents=True, exist_ok=True)
    if db_url.startswith("sqlite:///"):
        Path(db_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    before = {t.submission: sha256(Path(t.submission)) for t in found.tasks}

    by_assignment: dict[str, list] = {}
    for nb in course.notebooks():
        by_assignment.setdefault(nb.assignment, []).append(load_template(nb.source, nb.assignment, nb.name))
    used = sorted({t.assignment for t in found.tasks} | {m.assignment for m in found.missing})
    for assignment in used:
        record_assignment(db_url, assignment, by_assignment[assignment])
    formgrader_config = write_formgrader_config(db_url, autograded)

    writer = GradebookWriter(db_url)
    results: list[SubmissionResult] = []
    reused: list[SubmissionResult] = []
    bar = Progress(len(found.tasks), log, enabled=progress)
    templates = {(t.assignment, t.notebook): t for ts in by_assignment.values() for t in ts}

    def result_path(key: tuple[str, str, str]) -> Path:
        sid, aid, nid = key
        return out / "results" / sid / aid / f"{nid}.json"

    def store(result: SubmissionResult) -> None:
        key = "/".join(result.key)
        sid, aid, nid = result.key
        executed = result.executed or _placeholder_notebook(result)
        target = autograded / sid / aid / f"{nid}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(executed, encoding="utf-8")
        result.executed = None  # keep memory flat on big classes
        feedback.write(result, out / "feedback" / sid / aid / f"{nid}.html", templates.get((aid, nid)))
        writer.write(result)
        # Written last and atomically: its presence means everything above is done (resume).
        path = result_path(result.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(result.to_dict(), indent=1))
        os.replace(partial, path)
        results.append(result)
        state = "error" if result.error else ("errors" if result.has_errors else "ok")
        bar.update(f"{key} {state}")

    def finished(task: GradeTask) -> SubmissionResult | None:
        """The stored result of an earlier, interrupted run, if it still applies to this task."""
        path = result_path(task.key)
        if not resume or not path.exists():
            return None
        try:
            old = SubmissionResult.from_dict(json.loads(path.read_text()))
            return old if old.fingerprint and old.fingerprint == fingerprint(task) else None
        except (OSError, ValueError, TypeError):
            return None  # unreadable: grade again

    try:
        bar.begin()
        todo = []
        for task in found.tasks:
            previous = finished(task)
            if previous is None:
                todo.append(task)
            else:
                results.append(previous)
                reused.append(previous)
                bar.update("/".join(task.key) + " (finished earlier)")
        if scheduler:
            run_tasks_dask(todo, scheduler, store)
        else:
            run_tasks(todo, workers, store)
        for m in found.missing:
            writer.mark_missing(m.student_id, m.assignment, m.notebook)
            result = _missing_result(m)
            results.append(result)
            feedback.write(result, out / "feedback" / m.student_id / m.assignment / f"{m.notebook}.html", templates.get((m.assignment, m.notebook)))
    finally:
        writer.close()

    order = {(nb.assignment, nb.name): i for i, nb in enumerate(course.notebooks())}
    results.sort(key=lambda r: (r.student_id, order.get((r.assignment, r.notebook), 0)))
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for r in results:
            w.writerows(_rows(r))

    changed = [t.submission for t in found.tasks if Path(t.submission).exists() and sha256(Path(t.submission)) != before[t.submission]]
    seconds = time.perf_counter() - start
    summary = ClassSummary(
        submissions=len(found.tasks), students=len({t.student_id for t in found.tasks}),
        graded=sum(1 for r in results if not r.error and r.submission and not r.submission.startswith("(missing)")),
        repaired=sum(1 for r in results if r.repairs),
        errors=sum(1 for r in results if r.has_errors),
        seconds=seconds, workers=workers, results=results, changed_files=changed, reused=len(reused),
    )
    header = [
        "Autograde report",
        f"submitted: {submitted}",
        f"output:    {out}",
        f"gradebook: {db_url}" + (f"  (formgrader: cd {formgrader_config.parent} && jupyter lab)" if formgrader_config else ""),
        f"autograded notebooks: {autograded}",
        f"summary:   {summary.line()}",
    ]
    if reused:
        header.append(f"resumed:   {len(reused)} submission(s) finished by an earlier run were reused (--fresh regrades them)")
    for path in changed:
        header.append(f"WARNING: a submitted file changed while grading: {path}")
    for m in found.missing:
        header.append(f"missing:   {m.student_id}/{m.assignment}/{m.notebook} was not handed in (scored 0)")
    for item in found.ignored:
        header.append(f"ignored:   {item}")
    write_report(out / "report", results, header)
    return summary


def print_table(results: list[SubmissionResult], stream=None) -> None:
    """Students x notebooks: autograded score / max (+ points awaiting a human)."""
    stream = stream or sys.stdout
    columns = [(nb.assignment, nb.name) for nb in course.notebooks()]
    columns = [c for c in columns if any((r.assignment, r.notebook) == c for r in results)]
    cells: dict[str, dict] = {}
    for r in results:
        manual = sum(q.max_score for q in r.questions if q.status == "manual")
        text = f"{fmt(sum(q.score or 0 for q in r.questions if q.status != 'manual'))}/{fmt(r.max_score - manual)}"
        if r.error:
            text += " ERR"
        elif r.has_errors:
            text += " err"
        if manual:
            text += f" +{fmt(manual)}m"
        cells.setdefault(r.student_id, {})[(r.assignment, r.notebook)] = text
    width = max([len("student")] + [len(s) for s in cells]) + 2
    colw = [max(len(c[1]), 16) + 2 for c in columns]
    stream.write("student".ljust(width) + "".join(c[1].ljust(w) for c, w in zip(columns, colw)) + "\n")
    for sid in sorted(cells):
        stream.write(sid.ljust(width) + "".join(cells[sid].get(c, "-").ljust(w) for c, w in zip(columns, colw)) + "\n")
