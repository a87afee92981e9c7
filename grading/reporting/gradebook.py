"""Results in nbgrader's gradebook (so formgrader works for the written answers), and the export.

Which gradebook.  By default the course gradebook configured in the course's ``nbgrader_config.py``
(``gradebook.db`` in the course folder), so that results accumulate over the semester, nbgrader's
formgrader finds them (``jupyter lab`` in the course folder -> Formgrader) and ``python -m grading
export`` needs no argument.  ``--db PATH`` selects another one (a file path or an SQLAlchemy URL);
the demo and the tests use one inside their output folder.  :func:`check_gradebook` refuses a file
that is not an SQLite gradebook (a CSV passed by mistake) and another course's gradebook (unless
``--allow-other-course``): both are bad usage, exit 2.

The autograded notebooks that formgrader shows (hidden tests removed) go to the ``autograded``
directory configured for the course with the course gradebook, or to ``autograded/`` next to any
other gradebook file; that folder then becomes a course folder of its own
(:func:`write_formgrader_config`: ``nbgrader_config.py`` with the folder as course root, and
``source/``), because Formgrader refuses a course root outside the Jupyter server's root.

How results are stored (nbgrader's own API, as its ``SaveCells`` / ``SaveAutoGrades`` do):

* the assignment's cells are recorded with nbgrader's ``SaveCells`` preprocessor on the
  template (what ``generate_assignment`` does);
* per submission: ``update_or_create_student``, ``update_or_create_submission``, then each
  grade's ``auto_score``: the score for autograded questions, ``None`` for written answers
  awaiting a human, 0 for unanswered ones; ``needs_manual_grade`` follows nbgrader's rule (a
  human score exists, or no auto score) and is also set for questions that could not be graded
  (status ``error``) so that formgrader lists them for review;
* answer cells left as the stub get nbgrader's auto comment "No response.";
* a written answer whose text changed since a human scored it (:func:`changed_answers`, against
  the autograded copy the human saw) loses that score and its comment is marked as written for an
  earlier version.

Export statuses: ``graded`` (an auto score, or a human score which then wins), ``manual``
(waiting for a human: no score), ``error`` (could not be graded and nobody has scored it since).
:func:`export` also writes per-student totals, or Canvas's / Moodle's grade-import files.
"""

from __future__ import annotations

import csv
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nbgrader.api
from nbgrader import dbutil
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import SaveCells

from grading import course
from grading.intake.template import Template, load_template
from grading.model import Status
from grading.reporting.table import HEADER, fmt


@lru_cache(maxsize=1)
def _alembic_head() -> str:
    """The newest revision of nbgrader's gradebook migrations, which a new gradebook is stamped with.

    nbgrader asks the ``alembic heads`` command for it: a new Python process for every new gradebook
    (about 4 s).  alembic's own API reads the same migration scripts here, in milliseconds.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", dbutil.ALEMBIC_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


nbgrader.api.get_alembic_version = _alembic_head


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


FORMGRADER_MARK = "Written by `python -m grading autograde`"


def _sqlite_path(db_url: str) -> Path | None:
    return Path(db_url[len("sqlite:///"):]) if db_url.startswith("sqlite:///") else None


def write_formgrader_config(db_url: str, autograded: Path, submitted: Path | None = None) -> Path | None:
    """Make the folder of a non-course gradebook a course folder that Formgrader opens.

    Formgrader refuses a course whose root is not inside the Jupyter server's root ("The course
    directory root is not a subdirectory of the notebook server root"), so the folder itself is
    the course root: its ``nbgrader_config.py`` names this gradebook, ``autograded/`` beside it,
    ``source/`` (a copy of the course's solutions, refreshed on every run) as source, and the
    folder graded (``submitted``) as nbgrader's submitted folder, so that Manage Assignments counts
    its submissions.  A config written by someone else is left alone.  Start ``jupyter lab`` in that folder.
    """
    path = _sqlite_path(db_url)
    if db_url == course_db_url() or path is None:
        return None
    folder = path.parent
    config = folder / "nbgrader_config.py"
    if config.exists() and FORMGRADER_MARK not in config.read_text(errors="replace"):
        return config
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source"
    for nb in course.notebooks():
        target = source / nb.assignment / nb.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(nb.source.read_bytes())
    def relative(path: Path) -> str:  # nbgrader joins these to the root: an absolute path stays as it is
        path = Path(path).resolve()
        return os.path.relpath(path, folder.resolve()) if path.is_relative_to(folder.resolve()) else str(path)

    autograded_rel = relative(autograded)
    submitted_rel = relative(submitted) if submitted is not None else "submitted"
    config.write_text(
        f'"""{FORMGRADER_MARK}: a course folder for Formgrader with this folder\'s\n'
        "gradebook and autograded notebooks (start `jupyter lab` here and open Formgrader).\n"
        "Generate Feedback is safe here: the autograded notebooks hold no hidden tests and\n"
        'ClearHiddenTests runs again on the way out; `python -m grading feedback` is the richer route."""\n\n'
        "import os\n\n"
        "from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor\n"
        "from nbgrader.preprocessors import ClearHiddenTests, GetGrades\n"
        "from grading.reporting.feedback import ClearAfterHidden\n"
        "from traitlets.config.loader import PyFileConfigLoader\n\n"
        "c = get_config()  # noqa: F821\n"
        f"c.merge(PyFileConfigLoader('nbgrader_config.py', path={str(course.root())!r}).load_config())\n"
        "HERE = os.path.dirname(os.path.abspath(__file__))\n"
        "c.CourseDirectory.root = HERE\n"
        "c.CourseDirectory.source_directory = 'source'\n"
        "c.CourseDirectory.release_directory = 'release'\n"
        f"c.CourseDirectory.submitted_directory = {submitted_rel!r}\n"
        f"c.CourseDirectory.autograded_directory = {autograded_rel!r}\n"
        "c.CourseDirectory.feedback_directory = 'nbgrader-feedback'  # not feedback/: that is ours\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
        f"c.CourseDirectory.course_id = {course_id()!r}\n"
        "c.GenerateFeedback.preprocessors = [ClearHiddenTests, ClearAfterHidden, GetGrades, CSSHTMLHeaderPreprocessor]\n"
    )
    return config


class NotAGradebook(ValueError):
    """``--db`` names something that is not a usable gradebook of this course (exit 2)."""


def check_gradebook(db_url: str, allow_other_course: bool = False, must_exist: bool = False) -> None:
    """Refuse a file that is not an SQLite gradebook, and another course's gradebook.

    Another course: the gradebook names courses but not this one (``course_id`` in the course's
    nbgrader_config.py), or holds assignments this course does not have.  ``allow_other_course``
    (``--allow-other-course``) merges into it anyway.
    """
    path = _sqlite_path(db_url)
    if path is None:
        return
    if path.is_dir():
        raise NotAGradebook(f"--db {path} is a folder, not a gradebook file")
    if not path.exists() or path.stat().st_size == 0:
        if must_exist:
            raise NotAGradebook(f"no gradebook at {path} (run `python -m grading autograde` first, or pass --db)")
        return
    with open(path, "rb") as f:
        head = f.read(16)
    if head != b"SQLite format 3\x00":
        shown = head.decode("utf-8", "replace").splitlines()[0][:16] if head else ""
        raise NotAGradebook(f"{path} is not a gradebook: not an SQLite database (it starts with {shown!r}); "
                            "pass the gradebook.db file written by autograde")
    import sqlite3

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "course" not in tables:
                raise NotAGradebook(f"{path} is an SQLite database but not an nbgrader gradebook (no `course` table)")
            courses = sorted(r[0] for r in conn.execute("SELECT id FROM course"))
            names = sorted(r[0] for r in conn.execute("SELECT name FROM assignment")) if "assignment" in tables else []
    except sqlite3.DatabaseError as exc:
        raise NotAGradebook(f"{path} is not a readable gradebook: {exc}") from exc
    ours, known = course_id(), set(course.assignments())
    foreign = [a for a in names if a not in known]
    if allow_other_course:
        return
    if courses and ours not in courses:
        raise NotAGradebook(f"{path} is the gradebook of another course ({', '.join(courses)}; this course is {ours!r}): "
                            "refusing to merge grades into it; pass --allow-other-course to do it anyway")
    if foreign:
        raise NotAGradebook(f"{path} holds assignments this course does not have ({', '.join(foreign[:5])}): it looks like "
                            "another course's gradebook; pass --allow-other-course to merge into it anyway")


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


STALE_COMMENT = "[written for an earlier version of this answer]"


def _answer_cells(notebook_json: str) -> dict[str, str]:
    import nbformat

    try:
        nb = nbformat.reads(notebook_json, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable old copy: nothing to compare with
        return {}
    found = {}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid:
            found[gid] = " ".join(cell.source.split())
    return found


def changed_answers(previous: Path, executed: str | None, grade_ids) -> set[str]:
    """Of ``grade_ids`` (written answers), those whose text differs between the autograded
    notebook at ``previous`` (what a human graded) and the newly ``executed`` notebook."""
    previous = Path(previous)
    if not executed or not previous.is_file() or not grade_ids:
        return set()
    old, new = _answer_cells(previous.read_text(encoding="utf-8", errors="replace")), _answer_cells(executed)
    return {g for g in grade_ids if g in old and old.get(g) != new.get(g)}


def split_name(name: str) -> dict[str, str]:
    """nbgrader's first and last name from a name as an LMS writes it ("Jane Smith"; Canvas: "smithjane")."""
    words = name.split()
    if len(words) > 1:
        return {"first_name": " ".join(words[:-1]), "last_name": words[-1]}
    return {"last_name": name.strip()}


def student_names(db_url: str) -> dict[str, tuple[str, str]]:
    """student id -> (first name, last name) as the gradebook holds them ("" where unknown)."""
    with Gradebook(db_url, course_id()) as gb:
        return {s.id: (s.first_name or "", s.last_name or "") for s in gb.students}


class GradebookWriter:
    """The single writer: one open gradebook for a whole run, one commit per submission."""

    def __init__(self, db_url: str, names: dict[str, str] | None = None):
        self.db_url = db_url
        self.gb = Gradebook(db_url, course_id())
        self.names = names or {}  # student id -> name as the LMS wrote it (collect's roster.csv)

    def _student(self, sid: str) -> None:
        name = self.names.get(sid)
        self.gb.update_or_create_student(sid, **(split_name(name) if name else {}))

    def close(self) -> None:
        self.gb.close()

    def write(self, result, stale: set[str] | frozenset = frozenset()) -> list[str]:
        """Store ``result``; ``stale``: written answers whose text changed since the last run.

        A human score given to the old text of a ``stale`` answer is cleared (the question is
        back to ``manual``) and its comment marked as written for an earlier version; returns
        ``["<grade_id>: <old score>", ...]`` for the report.
        """
        with _quiet_sqlalchemy():
            cleared = self._clear_stale(result, stale) if stale else []
            self._write(result)
        return cleared

    def _clear_stale(self, result, stale) -> list[str]:
        return self._clear(result.student_id, result.assignment, result.notebook, stale)

    def _clear(self, sid: str, aid: str, nid: str, stale) -> list[str]:
        cleared = []
        for gid in sorted(stale):
            try:
                grade = self.gb.find_grade(gid, nid, aid, sid)
            except MissingEntry:
                continue
            if grade.manual_score is None:
                continue
            cleared.append(f"{gid}: {fmt(grade.manual_score)}")
            grade.manual_score = None
            try:
                comment = self.gb.find_comment(gid, nid, aid, sid)
                if comment.manual_comment and not comment.manual_comment.startswith(STALE_COMMENT):
                    comment.manual_comment = f"{STALE_COMMENT} {comment.manual_comment}"
            except MissingEntry:
                pass
        return cleared

    def _write(self, result) -> None:
        gb = self.gb
        sid, aid, nid = result.student_id, result.assignment, result.notebook
        self._student(sid)
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

    def mark_missing(self, student_id: str, assignment: str, notebook: str) -> list[str]:
        """A notebook of a submitted assignment that was not handed in (or is another notebook): 0 everywhere,
        flagged for review.  A human score given to an earlier hand-in is cleared, as for a changed answer:
        the text it was given for is not handed in any more.  Returns ``["<grade_id>: <old score>", ...]``."""
        with _quiet_sqlalchemy():
            return self._mark_missing(student_id, assignment, notebook)

    def _mark_missing(self, student_id: str, assignment: str, notebook: str) -> list[str]:
        gb = self.gb
        self._student(student_id)
        gb.update_or_create_submission(assignment, student_id)
        submission = gb.find_submission_notebook(notebook, assignment, student_id)
        graded = {grade.name for grade in submission.grades if grade.manual_score is not None}
        cleared = self._clear(student_id, assignment, notebook, graded) if graded else []
        for grade in submission.grades:  # 0, flagged for review (status `error`: see the report)
            grade.auto_score = 0
            grade.needs_manual_grade = True
        gb.db.commit()
        return cleared


def _question_order(assignment: str, notebook: str) -> dict[str, int]:
    for nb in course.notebooks():
        if nb.assignment == assignment and nb.name == notebook and nb.source.exists():
            template = load_template(nb.source, assignment, notebook)
            return {q.grade_id: i for i, q in enumerate(template.questions)}
    return {}


@dataclass
class GradeRecord:
    """One question of one student's notebook as the gradebook has it now (human scores win)."""

    student_id: str
    assignment: str
    notebook: str
    question: str
    score: float | None
    max_score: float
    status: str  # graded | manual | error
    comment: str = ""  # the human's comment, if any
    by_hand: bool = False  # a human score (manual_score) decided it

    def row(self) -> list[str]:
        return [self.student_id, self.assignment, self.notebook, self.question, fmt(self.score), fmt(self.max_score), self.status]


def grade_records(db_url: str) -> list[GradeRecord]:
    records = []
    with Gradebook(db_url, course_id()) as gb:
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            orders = {nb.name: _question_order(assignment.name, nb.name) for nb in assignment.notebooks}
            for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
                for snb in sorted(submission.notebooks, key=lambda n: n.name):
                    order = orders.get(snb.name, {})
                    comments = {c.name: (c.manual_comment or "") for c in snb.comments}
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
                        records.append(GradeRecord(
                            submission.student.id, assignment.name, snb.name, grade.name, score, grade.max_score,
                            status, comments.get(grade.name, ""), grade.manual_score is not None,
                        ))
    return records


def human_marks(db_url: str) -> tuple[dict, dict]:
    """What humans entered (Formgrader): ({(student, assignment, notebook, grade_id): manual score},
    {(student, assignment, notebook, cell name): manual comment})."""
    scores, comments = {}, {}
    with Gradebook(db_url, course_id()) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                for snb in submission.notebooks:
                    base = (submission.student.id, assignment.name, snb.name)
                    for grade in snb.grades:
                        if grade.manual_score is not None:
                            scores[(*base, grade.name)] = grade.manual_score + (grade.extra_credit or 0)
                    for comment in snb.comments:
                        if comment.manual_comment:
                            comments[(*base, comment.name)] = comment.manual_comment
    return scores, comments


def export_rows(db_url: str) -> list[list[str]]:
    return [r.row() for r in grade_records(db_url)]


TOTALS_HEADER = ["student_id", "assignment", "score", "max_score", "to_grade_by_hand", "errors"]
FORMATS = ("csv", "canvas", "moodle")


@dataclass
class Total:
    score: float = 0.0
    max_score: float = 0.0
    pending: float = 0.0  # points of questions awaiting a human
    errors: int = 0

    def add(self, r: GradeRecord) -> None:
        self.score += r.score or 0
        self.max_score += r.max_score or 0
        self.pending += (r.max_score or 0) if r.status == "manual" else 0
        self.errors += r.status == "error"


def totals(records: list[GradeRecord]) -> dict[tuple[str, str], Total]:
    """(student, assignment) -> Total, plus (student, "all") for the whole course."""
    out: dict[tuple[str, str], Total] = {}
    for r in records:
        for key in ((r.student_id, r.assignment), (r.student_id, "all")):
            out.setdefault(key, Total()).add(r)
    # The course's maximum is the same for everyone: an assignment a student did not hand in counts as 0 of its points.
    course_max = sum(max(t.max_score for (_, a), t in out.items() if a == assignment)
                     for assignment in {a for _, a in out if a != "all"})
    for (_, assignment), total in out.items():
        if assignment == "all":
            total.max_score = course_max
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1] == "all", kv[0][1])))


def totals_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_totals{out.suffix or '.csv'}")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert_cell(value):
    """A cell a spreadsheet shows as text: one that starts like a formula (``=``, ``+``, ``-``, ``@``, tab, CR)
    and is not a number gets a leading ``'``.  Names in these files come from the LMS, where students chose them
    (a profile named ``=2+5+cmd`` was a formula in the Moodle worksheet)."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def _write_csv(path: Path, header: list[str], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([inert_cell(h) for h in header])
        writer.writerows([inert_cell(v) for v in row] for row in rows)


def _canvas(path: Path, records: list[GradeRecord], sums, names) -> list[Path]:
    """Canvas Gradebook import (Grades > Import): Student, ID, SIS User ID, SIS Login ID, Section,
    then one column per assignment; the second row is Canvas's own "Points Possible" row.  ``ID`` is
    the Canvas user id that ``collect`` takes from Canvas's file names; ``Student`` is the name Canvas
    wrote into them (``collect``'s ``roster.csv``; Canvas matches rows by ``ID``).  A column whose name matches
    no Canvas assignment becomes a new assignment; rename a column to "<Canvas name> (<id>)" to
    update an existing one."""
    assignments = sorted({r.assignment for r in records})
    students = sorted({r.student_id for r in records})
    possible = {a: next(t.max_score for (s, aa), t in sums.items() if aa == a) for a in assignments}
    rows = [["    Points Possible", "", "", "", "", *[fmt(possible[a]) for a in assignments]]]
    for sid in students:
        first, last = names.get(sid, ("", ""))
        student = ", ".join(x for x in (last, first) if x) or sid
        rows.append([student, sid, "", "", "", *[fmt(sums[(sid, a)].score) if (sid, a) in sums else "" for a in assignments]])
    _write_csv(path, ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *assignments], rows)
    return [path]


def _moodle_time() -> str:
    import time

    return time.strftime("%A, %d %B %Y, %I:%M %p")


def _moodle(path: Path, records: list[GradeRecord], sums, names) -> list[Path]:
    """Moodle's offline grading worksheet, one per assignment (Assignment > View all submissions >
    Upload grading worksheet): Identifier ("Participant <id>", the id ``collect`` takes from
    Moodle's folder names), Full name (as Moodle wrote it there: ``collect``'s ``roster.csv``), Grade, Maximum Grade, Last modified (grade), Feedback
    comments (the human comments).  Several assignments: ``<name>_<assignment>.csv`` each."""
    assignments = sorted({r.assignment for r in records})
    now = _moodle_time()
    written = []
    for a in assignments:
        target = path if len(assignments) == 1 else path.with_name(f"{path.stem}_{a}{path.suffix or '.csv'}")
        rows = []
        for sid in sorted({r.student_id for r in records if r.assignment == a}):
            t = sums[(sid, a)]
            notes = [f"{r.question}: {r.comment}" for r in records if r.assignment == a and r.student_id == sid and r.comment]
            full = " ".join(x for x in names.get(sid, ("", "")) if x) or sid
            rows.append([f"Participant {sid}", full, fmt(t.score), fmt(t.max_score), now, "\n".join(notes)])
        _write_csv(target, ["Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)", "Feedback comments"], rows)
        written.append(target)
    return written


def provisional(db: str | Path | None) -> list[str]:
    """Why the exported grades are not final yet, in words: points still to grade by hand, error rows (0)."""
    records = grade_records(db_url_for(db))
    sums = {k: t for k, t in totals(records).items() if k[1] != "all"}
    pending = [k for k, t in sums.items() if t.pending]
    errors = [k for k, t in sums.items() if t.errors]
    lines = []
    if pending:
        points = sum(sums[k].pending for k in pending)
        lines.append(f"{len(pending)} student-assignment(s) still have {fmt(points)} point(s) to grade by hand (counted as 0 "
                     "in this export): grade them in Formgrader and export again")
    if errors:
        lines.append(f"{len(errors)} student-assignment(s) include questions that could not be graded (error rows, counted as 0): "
                     f"{', '.join(f'{s}/{a}' for s, a in errors[:8])}{' ...' if len(errors) > 8 else ''}; see the report")
    return lines


def export(db: str | Path | None, out: Path, format: str = "csv", allow_other_course: bool = False) -> int:  # noqa: A002
    """Write the final table (manual grades included) from the gradebook; return the row count.

    ``csv`` (default): ``out`` with the grades.csv columns (contract) and ``<out>_totals.csv``
    with per-student totals per assignment and over the course (``all``).  ``canvas`` /
    ``moodle``: ``out`` in that LMS's grade-import format (totals per assignment).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    db_url = db_url_for(db)
    check_gradebook(db_url, allow_other_course, must_exist=True)
    records = grade_records(db_url)
    sums = totals(records)
    out = Path(out)
    if format == "canvas":
        _canvas(out, records, sums, student_names(db_url))
    elif format == "moodle":
        _moodle(out, records, sums, student_names(db_url))
    else:
        _write_csv(out, HEADER, [r.row() for r in records])
        _write_csv(totals_path(out), TOTALS_HEADER, [
            [sid, a, fmt(t.score), fmt(t.max_score), fmt(t.pending), t.errors] for (sid, a), t in sums.items()])
    return len(records)
