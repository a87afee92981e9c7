"""Grade a class: discover -> grade (in parallel) -> store -> report.  One writer: this process.

``python -m grading autograde SUBMITTED --out OUT [--workers N] [--db PATH]``

Workers (:mod:`grading.execution.pool`) run :func:`grading.submission.grade_submission`; this
process alone writes ``OUT/grades.csv``, ``OUT/feedback/``, ``OUT/report``, ``OUT/dashboard.html``,
``OUT/results/`` (one JSON per submission, for resume) and the gradebook.  The submitted files are
hashed before and after: they are only ever read.  Before grading, each file's content is checked
against its place (:func:`_wrong_notebooks`): another notebook of the course is graded as what it is.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading import course
from grading import workers as pool
from grading.execution.sandbox import enforced_limits
from grading.intake import identify
from grading.intake.collect import read_issues, read_roster
from grading.intake.discover import Discovery, Missing, discover
from grading.intake.template import load_template
from grading.model import Failure, GradeTask, SubmissionResult
from grading.options import GradeOptions
from grading.reporting import feedback
from grading.reporting.gradebook import (
    GradebookWriter,
    NotAGradebook,
    autograded_dir_for,
    changed_answers,
    check_gradebook,
    db_url_for,
    record_assignment,
    write_formgrader_config,
)
from grading.reporting.report import write_report
from grading.reporting.table import write_grades
from grading.reporting.terminal import Progress
from grading.store import ResultStore
from grading.submission import sha256


class UsageError(ValueError):
    """Bad usage (exit 2): nothing to grade, an unknown assignment or student id."""


class InfrastructureError(RuntimeError):
    """Submissions could not be graded for reasons that are not the students' (exit 3)."""


class Interrupted(RuntimeError):
    """Ctrl-C: ``done`` of ``total`` submissions are finished and stored."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted after {done} of {total}; run the same command again to resume")
        self.done, self.total = done, total


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
    reused: int = 0  # finished by an earlier run of the same command
    infrastructure: list[SubmissionResult] = field(default_factory=list)

    def line(self) -> str:
        per = self.seconds / self.submissions if self.submissions else 0
        how = f"{self.workers} worker(s)" if self.workers else "in-process"
        return (f"{self.submissions} submission(s) from {self.students} student(s) in {self.seconds:.1f}s "
                f"({per:.1f}s per submission, {how}): {self.graded} graded, "
                f"{self.repaired} repaired, {self.errors} with errors"
                + (f", {self.reused} reused from an earlier run" if self.reused else ""))


def _check_usage(found: Discovery, submitted: Path, assignments, students) -> None:
    known = course.assignments()
    unknown = [a for a in assignments or [] if a not in known]
    if unknown:
        raise UsageError(f"unknown assignment id(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    missing_students = [s for s in students or [] if s not in found.students]
    if missing_students:
        shown = ", ".join(found.students[:20]) + (" ..." if len(found.students) > 20 else "")
        raise UsageError(f"no folder for student(s) {', '.join(missing_students)} in {submitted}; found: {shown or 'none'}")
    if not found.tasks and not found.missing:
        raise UsageError(
            f"no submissions in {submitted}: expected {submitted}/<student_id>/<assignment_id>/<notebook>.ipynb (or .py)"
            + (f"; ignored: {'; '.join(found.ignored[:5])}" if found.ignored else "")
            + (f"; assignments found: {', '.join(found.assignments)}" if found.assignments else "")
        )


def _missing_result(m: Missing) -> SubmissionResult:
    nb = next(n for n in course.notebooks(m.assignment) if n.name == m.notebook)
    result = pool.crashed(GradeTask(m.student_id, m.assignment, m.notebook, "", str(nb.source)), "notebook not handed in",
                          Failure.MISSING)
    result.submission = ""
    return result


def _placeholder_notebook(result: SubmissionResult) -> str:
    nb = next(n for n in course.notebooks(result.assignment) if n.name == result.notebook)
    template = load_template(nb.source, result.assignment, result.notebook)
    notebook = template.fresh_notebook()
    # the error can quote the file (nbformat's message repeats its version field): plain text, never Markdown
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Not graded automatically:**\n\n{feedback.text_block(result.error)}"))
    return nbformat.writes(notebook)


def _write_placeholder(autograded: Path, result: SubmissionResult) -> None:
    """What Formgrader shows for a notebook not handed in (or handed in as another): not an earlier hand-in."""
    sid, aid, nid = result.key
    target = autograded / sid / aid / f"{nid}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_placeholder_notebook(result), encoding="utf-8")


def autograde_class(submitted: Path, out: Path, workers: int | None = None, db: str | None = None,
                    options: GradeOptions | None = None, assignments: list[str] | None = None,
                    students: list[str] | None = None, progress: bool = True, log=None,
                    resume: bool = True, scheduler: str | None = None, on_result=None,
                    allow_other_course: bool = False) -> ClassSummary:
    """Grade every submission under ``submitted`` into ``out`` (and the gradebook); see the module docstring.

    ``on_result`` (optional) is called with each fresh result after it is stored (the benchmark
    uses it to time submissions).
    """
    log = log or sys.stderr
    start = time.perf_counter()
    options = options or GradeOptions()
    workers = (os.cpu_count() or 1) if workers is None else workers
    submitted, out = Path(submitted).resolve(), Path(out).resolve()
    found = discover(submitted, options, assignments, students)
    _check_usage(found, submitted, assignments, students)
    db_url = db_url_for(db)
    try:
        check_gradebook(db_url, allow_other_course)
    except NotAGradebook as exc:
        raise UsageError(str(exc)) from None
    wrong = _wrong_notebooks(found)
    autograded = autograded_dir_for(db_url)
    out.mkdir(parents=True, exist_ok=True)
    if db_url.startswith("sqlite:///"):
        Path(db_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    before = {t.submission: sha256(Path(t.submission)) for t in found.tasks}

    by_assignment: dict[str, list] = {}
    for nb in course.notebooks():
        by_assignment.setdefault(nb.assignment, []).append(load_template(nb.source, nb.assignment, nb.name))
    for assignment in sorted({t.assignment for t in found.tasks} | {m.assignment for m in found.missing} | {r.assignment for r in wrong}):
        record_assignment(db_url, assignment, by_assignment[assignment])
    formgrader_config = write_formgrader_config(db_url, autograded, Path(submitted))
    templates = {(t.assignment, t.notebook): t for ts in by_assignment.values() for t in ts}

    store = ResultStore(out)
    writer = GradebookWriter(db_url, read_roster(Path(submitted)))
    results: list[SubmissionResult] = []
    reused: list[SubmissionResult] = []
    cleared: list[str] = []  # human scores of written answers that were resubmitted
    bar = Progress(len(found.tasks), log, enabled=progress)

    def keep(result: SubmissionResult) -> None:
        began = time.perf_counter()
        sid, aid, nid = result.key
        target = autograded / sid / aid / f"{nid}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        text = feedback.inert_notebook(result.executed) if result.executed else _placeholder_notebook(result)
        stale = _stale_written_answers(target, text, result)
        target.write_text(text, encoding="utf-8")
        feedback.write(result, out / "feedback" / sid / aid / f"{nid}.html", templates.get((aid, nid)))
        result.executed = None  # keep memory flat on big classes
        cleared.extend(f"{sid}/{aid}/{nid} {c} (the answer changed since it was graded by hand)"
                       for c in writer.write(result, stale))
        result.timings["store"] = time.perf_counter() - began
        if result.failure not in (Failure.INFRASTRUCTURE, Failure.GRADER):
            store.save(result)  # last: its presence means everything above is done
        results.append(result)
        state = "error" if result.error else ("errors" if result.has_errors else "ok")
        bar.update(f"{'/'.join(result.key)} {state}")
        if on_result is not None:
            on_result(result)

    try:
        bar.begin()
        todo = []
        for task in found.tasks:
            previous = store.finished(task) if resume else None
            if previous is None:
                todo.append(task)
            else:
                results.append(previous)
                reused.append(previous)
                bar.update("/".join(task.key) + " (finished earlier)")
        try:
            if scheduler:
                pool.run_dask(todo, scheduler, keep)
            else:
                pool.run_local(todo, workers, keep)
        except KeyboardInterrupt:
            bar.interrupted()
            raise Interrupted(len(results), len(found.tasks)) from None
        for result in wrong:
            cleared.extend(f"{'/'.join(result.key)} {c} (the file handed in now is another notebook)"
                           for c in writer.mark_missing(result.student_id, result.assignment, result.notebook))
            _write_placeholder(autograded, result)
            results.append(result)
            feedback.write(result, out / "feedback" / result.student_id / result.assignment / f"{result.notebook}.html",
                           templates.get((result.assignment, result.notebook)))
        for m in found.missing:
            cleared.extend(f"{m.student_id}/{m.assignment}/{m.notebook} {c} (not handed in any more)"
                           for c in writer.mark_missing(m.student_id, m.assignment, m.notebook))
            result = _missing_result(m)
            _write_placeholder(autograded, result)
            results.append(result)
            feedback.write(result, out / "feedback" / m.student_id / m.assignment / f"{m.notebook}.html",
                           templates.get((m.assignment, m.notebook)))
    finally:
        writer.close()

    order = {(nb.assignment, nb.name): i for i, nb in enumerate(course.notebooks())}
    results.sort(key=lambda r: (r.student_id, order.get((r.assignment, r.notebook), 0)))
    write_grades(out / "grades.csv", results)

    changed = [t.submission for t in found.tasks if Path(t.submission).exists() and sha256(Path(t.submission)) != before[t.submission]]
    infrastructure = [r for r in results if r.failure is Failure.INFRASTRUCTURE]
    summary = ClassSummary(
        submissions=len(found.tasks), students=len({t.student_id for t in found.tasks}),
        graded=sum(1 for r in results if not r.error and not r.missing),
        repaired=sum(1 for r in results if r.repairs),
        errors=sum(1 for r in results if r.has_errors),
        seconds=time.perf_counter() - start, workers=workers, results=results, changed_files=changed,
        reused=len(reused), infrastructure=infrastructure,
    )
    header = [
        "Autograde report",
        f"submitted: {submitted}",
        f"output:    {out}",
        f"gradebook: {db_url}" + (f"  (formgrader: cd {formgrader_config.parent} && jupyter lab)" if formgrader_config else ""),
        f"autograded notebooks: {autograded}",
        f"summary:   {summary.line()}",
        f"limits:    {'; '.join(enforced_limits(options.limits, options.sandbox))}",
    ]
    if reused:
        header.append(f"resumed:   {len(reused)} submission(s) finished by an earlier run were reused (--fresh regrades them)")
    for path in changed:
        header.append(f"WARNING: a submitted file changed while grading: {path}")
    if infrastructure:
        header.append(f"ERROR: {len(infrastructure)} submission(s) could not be graded: {infrastructure[0].error} "
                      "(not stored: the same command grades them once this is fixed)")
    for line in cleared:
        header.append(f"manual score cleared: {line}; grade it again in Formgrader")
    for r in wrong:
        header.append(f"wrong notebook: {r.student_id}/{r.assignment}/{r.notebook}: {r.error}")
    for m in found.missing:
        header.append(f"missing:   {m.student_id}/{m.assignment}/{m.notebook} was not handed in (scored 0)")
    absent = _absent(found, results, students)
    for line in absent:
        header.append(f"no submission: {line}")
    for item in found.ignored:
        header.append(f"ignored:   {item}")
    collected = read_issues(Path(submitted))  # what `collect` left out: those students are not in this folder at all
    for line in collected:
        header.append(f"collect:   {line}")
    write_report(out / "report", results, header)
    try:
        _write_dashboard(out, results, absent, cleared + [f"collect: {x}" for x in collected], found.ignored, db_url)
    except Exception as exc:  # noqa: BLE001 - the grades are written; a broken page must not hide them
        print(f"warning: dashboard.html not written ({type(exc).__name__}: {exc}); "
              f"`python -m grading dashboard --out {out}` retries", file=log)
    return summary


def _stale_written_answers(target: Path, text: str, result: SubmissionResult) -> set[str]:
    """Written answers (manual questions) whose text differs from the copy a human graded."""
    manual = {q.grade_id for q in result.questions if q.graded_by == "manual"}
    return changed_answers(target, text, manual)


def _wrong_notebooks(found: Discovery) -> list[SubmissionResult]:
    """Submitted files whose content is another notebook of the course (recognised by its cells).

    Such a file is graded as what it is when the student did not hand that notebook in too (the
    task is moved there, with a note), else left out; either way the notebook it was handed in
    as gets a ``wrong notebook`` result that says so.  ``found.tasks`` is changed in place.
    """
    have = {t.key for t in found.tasks}
    kept, wrong = [], []
    for task in found.tasks:
        path = Path(task.submission)
        expected = course.Notebook(task.assignment, task.notebook)
        match = identify.wrong_notebook(path, expected)
        if match is None:
            kept.append(task)
            continue
        real = match.notebook
        key = (task.student_id, real.assignment, real.name)
        why = identify.wrong_reason(path.name, real, task.notebook, match.describe(), left_out=key in have)
        if key not in have:
            have.add(key)
            kept.append(GradeTask(task.student_id, real.assignment, real.name, task.submission, str(real.source),
                                  task.options, task.timestamp,
                                  identify.graded_as_note(f"{task.assignment}/{task.notebook}", path.name, real)))
        result = pool.crashed(GradeTask(task.student_id, task.assignment, task.notebook, "", task.source), why, Failure.WRONG_NOTEBOOK)
        result.submission = task.submission
        wrong.append(result)
    for misnamed in found.misnamed:  # collect already moved such a file to the notebook it holds: the same rows
        if (misnamed.student_id, misnamed.assignment, misnamed.notebook) in have:
            continue
        source = next(nb.source for nb in course.notebooks() if (nb.assignment, nb.name) == (misnamed.assignment, misnamed.notebook))
        result = pool.crashed(GradeTask(misnamed.student_id, misnamed.assignment, misnamed.notebook, "", str(source)),
                              misnamed.why, Failure.WRONG_NOTEBOOK)
        result.submission = misnamed.file
        wrong.append(result)
    found.tasks[:] = kept
    wrong_keys = {r.key for r in wrong}
    found.missing[:] = [m for m in found.missing if (m.student_id, m.assignment, m.notebook) not in have | wrong_keys]
    return wrong


def _absent(found: Discovery, results: list[SubmissionResult], students: list[str] | None) -> list[str]:
    """Students with nothing for a notebook that others handed in (not even an empty folder)."""
    present = {(r.assignment, r.notebook): set() for r in results if not r.missing}
    for r in results:
        if (r.assignment, r.notebook) in present:
            present[(r.assignment, r.notebook)].add(r.student_id)
    everyone = [s for s in found.students if not students or s in students]
    lines = []
    for (aid, nid), who in sorted(present.items()):
        handed = {r.student_id for r in results if (r.assignment, r.notebook) == (aid, nid)}
        for sid in everyone:
            if sid not in handed:
                lines.append(f"{sid} has no {aid}/{nid}, which {len(who)} other student(s) handed in")
    return lines


def _write_dashboard(out: Path, results: list[SubmissionResult], absent: list[str], notes: list[str], ignored: list[str],
                     db_url: str) -> None:
    """The class page, with the human scores and comments the gradebook holds (as `python -m grading dashboard --db`)."""
    import copy

    from grading.reporting import dashboard
    from grading.reporting.feedback import with_human_marks
    from grading.reporting.gradebook import human_marks

    scores, comments = human_marks(db_url)
    shown = [copy.deepcopy(r) for r in results] if scores or comments else results
    for r in shown:
        with_human_marks(r, scores, comments)
    dashboard.write(out / "dashboard.html", shown, absent=absent, notes=notes, ignored=ignored)
