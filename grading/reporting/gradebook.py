"""Results in nbgrader's gradebook (so formgrader works for the written answers), and the export.

Which gradebook.  By default the course gradebook configured in ``grading/nbgrader_config.py``
(``grading/gradebook.db``), so that results accumulate over the semester, nbgrader's formgrader
finds them (``cd grading && jupyter lab`` -> Formgrader) and ``python -m grading export`` needs
no argument.  ``--db PATH`` selects another one (a file path or an SQLAlchemy URL); the demo and
the tests use one inside their output folder.

The autograded notebooks that formgrader shows go to the ``autograded`` directory configured
for the course (``grading/autograded``) with the course gradebook, or to ``autograded/`` next
to any other gradebook file; in that case an ``nbgrader_config.py`` is written next to it too
(unless one exists), so that formgrader started from that folder uses this gradebook.

How results are stored (nbgrader's own API, as its ``SaveCells`` / ``SaveAutoGrades`` do):

* the assignment's cells are recorded with nbgrader's ``SaveCells`` preprocessor on the
  template (what ``generate_assignment`` does);
* per submission: ``update_or_create_student``, ``update_or_create_submission``, then each
  grade's ``auto_score``: the score for autograded questions, ``None`` for written answers
  awaiting a human, 0 for unanswered ones; ``needs_manual_grade`` follows nbgrader's rule (a
  human score exists, or no auto score) and is also set for questions that could not be graded
  (status ``error``) so that formgrader lists them for review;
* answer cells left as the stub get nbgrader's auto comment "No response.".

Export statuses: ``graded`` (an auto score, or a human score which then wins), ``manual``
(waiting for a human: no score), ``error`` (could not be graded and nobody has scored it since).
"""

from __future__ import annotations

import csv
import warnings
from contextlib import contextmanager
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import SaveCells

from grading import course
from grading.intake.template import Template, load_template
from grading.model import Status
from grading.reporting.table import HEADER, fmt


def course_db_url() -> str:
    return course.load_config().CourseDirectory.db_url


def course_id() -> str:
    return course.load_config().CourseDirectory.course_id or "default_course"


def db_url_for(db: str | Path | None) -> str:
    """An SQLAlchemy URL for ``--db`` (None: the course gradebook)."""
    if db is None:
        return course_db_url()
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def autograded_dir_for(db_url: str) -> Path:
    """Where the executed notebooks go for formgrader (see the module docstring)."""
    config = course.load_config()
    if db_url == course_db_url():
        return (course.root() / config.CourseDirectory.autograded_directory).resolve()
    if db_url.startswith("sqlite:///"):
        return Path(db_url[len("sqlite:///"):]).parent / "autograded"
    return Path.cwd() / "autograded"


def write_formgrader_config(db_url: str, autograded: Path) -> Path | None:
    """An nbgrader_config.py next to a non-course gradebook, so formgrader can be run from there."""
    if db_url == course_db_url() or not db_url.startswith("sqlite:///"):
        return None
    folder = Path(db_url[len("sqlite:///"):]).parent
    path = folder / "nbgrader_config.py"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '"""Written by `python -m grading autograde`: the course configuration, with this folder\'s\n'
        'gradebook and autograded notebooks (start `jupyter lab` here and open Formgrader)."""\n\n'
        "from traitlets.config.loader import PyFileConfigLoader\n\n"
        "c = get_config()  # noqa: F821\n"
        f"c.merge(PyFileConfigLoader('nbgrader_config.py', path={str(course.root())!r}).load_config())\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
        f"c.CourseDirectory.autograded_directory = {str(autograded)!r}\n"
    )
    return path


@contextmanager
def _quiet_sqlalchemy():
    """nbgrader 0.9 with SQLAlchemy 2 warns about its own autoflush in add_submission: harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not in session.*")
        yield


class GradebookConflict(RuntimeError):
    """The gradebook holds submissions graded against a different version of a notebook."""


def record_assignment(db_url: str, assignment: str, templates: list[Template]) -> None:
    """Record the assignment's notebooks and cells (nbgrader's SaveCells, as generate_assignment)."""
    with Gradebook(db_url, course_id()) as gb:
        gb.update_or_create_assignment(assignment)
    config = course.load_config()
    for template in templates:
        resources = {"nbgrader": {"notebook": template.notebook, "assignment": assignment, "db_url": db_url}}
        try:
            SaveCells(config=config).preprocess(template.fresh_notebook(), resources)
        except RuntimeError as exc:
            raise GradebookConflict(
                f"{exc}: the gradebook {db_url} holds submissions graded against another version of "
                f"{assignment}/{template.notebook}. Grade into a new gradebook (--db PATH), or remove those "
                f"submissions first (nbgrader db assignment remove {assignment})."
            ) from exc


class GradebookWriter:
    """The single writer: one open gradebook for a whole run, one commit per submission."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.gb = Gradebook(db_url, course_id())

    def close(self) -> None:
        self.gb.close()

    def write(self, result) -> None:
        with _quiet_sqlalchemy():
            self._write(result)

    def _write(self, result) -> None:
        gb = self.gb
        sid, aid, nid = result.student_id, result.assignment, result.notebook
        gb.update_or_create_student(sid)
        kwargs = {}
        if result.timestamp:
            kwargs["timestamp"] = result.timestamp
        gb.update_or_create_submission(aid, sid, **kwargs)
        for q in result.questions:
            try:
                grade = gb.find_grade(q.grade_id, nid, aid, sid)
            except MissingEntry:
                continue
            grade.auto_score = q.score if q.status is not Status.MANUAL else None
            grade.needs_manual_grade = (
                q.status is Status.ERROR or grade.manual_score is not None or grade.auto_score is None
            )
        for gid, answered in result.answered.items():
            try:
                comment = gb.find_comment(gid, nid, aid, sid)
            except MissingEntry:
                continue
            comment.auto_comment = None if answered else "No response."
        gb.db.commit()

    def mark_missing(self, student_id: str, assignment: str, notebook: str) -> None:
        """A notebook of a submitted assignment that was not handed in: 0 everywhere, flagged for review."""
        with _quiet_sqlalchemy():
            self._mark_missing(student_id, assignment, notebook)

    def _mark_missing(self, student_id: str, assignment: str, notebook: str) -> None:
        gb = self.gb
        gb.update_or_create_student(student_id)
        gb.update_or_create_submission(assignment, student_id)
        submission = gb.find_submission_notebook(notebook, assignment, student_id)
        for grade in submission.grades:  # 0, flagged for review (status `error`: see the report)
            grade.auto_score = 0
            grade.needs_manual_grade = True
        gb.db.commit()


def _question_order(assignment: str, notebook: str) -> dict[str, int]:
    for nb in course.notebooks():
        if nb.assignment == assignment and nb.name == notebook and nb.source.exists():
            template = load_template(nb.source, assignment, notebook)
            return {q.grade_id: i for i, q in enumerate(template.questions)}
    return {}


def export_rows(db_url: str) -> list[list[str]]:
    rows = []
    with Gradebook(db_url, course_id()) as gb:
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            orders = {nb.name: _question_order(assignment.name, nb.name) for nb in assignment.notebooks}
            for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
                for snb in sorted(submission.notebooks, key=lambda n: n.name):
                    order = orders.get(snb.name, {})
                    for grade in sorted(snb.grades, key=lambda g: (order.get(g.name, 10**6), g.name)):
                        if grade.manual_score is not None:
                            score, status = grade.manual_score, "graded"
                        elif grade.auto_score is None:
                            score, status = None, "manual"
                        elif grade.needs_manual_grade:
                            score, status = grade.auto_score, "error"
                        else:
                            score, status = grade.auto_score, "graded"
                        if score is not None and grade.extra_credit:
                            score += grade.extra_credit
                        rows.append([
                            submission.student.id, assignment.name, snb.name, grade.name,
                            fmt(score), fmt(grade.max_score), status,
                        ])
    return rows


def export(db: str | Path | None, out: Path) -> int:
    """Write the final table (manual grades included) from the gradebook; return the row count."""
    db_url = db_url_for(db)
    if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///"):]).exists():
        raise FileNotFoundError(f"no gradebook at {db_url[len('sqlite:///'):]} (run `python -m grading autograde` first, or pass --db)")
    rows = export_rows(db_url)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return len(rows)
