"""The human half of the loop without kernels: a --db course folder, feedback with manual scores and
comments, stale manual scores after a resubmission, refusing the wrong gradebook, totals and LMS exports.

Results are fabricated from the templates (what a worker would return), and written through the same
functions autograde uses, so these tests take seconds.
"""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from traitlets.config.loader import PyFileConfigLoader

from grading import course
from grading.intake.template import load_template
from grading.model import GradedBy, QuestionResult, Status, SubmissionResult
from grading.reporting import feedback
from grading.reporting.gradebook import (
    GradebookWriter,
    NotAGradebook,
    changed_answers,
    check_gradebook,
    export,
    record_assignment,
    totals_path,
    write_formgrader_config,
)
from grading.reporting.table import HEADER
from grading.store import ResultStore
from grading.tools import synthetic

NB = course.notebooks()[0]
T = load_template(NB.source, NB.assignment, NB.name)
MANUAL = [p.grade_id for p in T.questions if p.graded_by == "manual"]
ROOT = course.root()


def fabricate(student: str, full: bool = True, answer_text: str = "Because the variance grows with d.") -> SubmissionResult:
    r = SubmissionResult(student, NB.assignment, NB.name, f"/nowhere/{student}.ipynb", format="Jupyter notebook")
    for p in T.questions:
        if p.graded_by == "manual":
            q = QuestionResult(p.grade_id, GradedBy.MANUAL, p.points, None, Status.MANUAL, "awaiting grading by the instructor",
                               answer=p.grade_id, title=p.title)
            r.answers[p.grade_id] = answer_text
            r.answered[p.grade_id] = True
        else:
            q = QuestionResult(p.grade_id, GradedBy.AUTO, p.points, p.points if full else 0.0, Status.GRADED,
                               "" if full else "hidden checks failed: wrong values", answer=p.answer, title=p.title)
        r.questions.append(q)
    notebook = synthetic.filled(NB, {**synthetic.solutions(NB), **{g: answer_text for g in MANUAL}})
    r.executed = nbformat.writes(notebook)
    r.timings = {"total": 3.0}
    return r


def grade_into(folder: Path, results: list[SubmissionResult], names: dict[str, str] | None = None) -> str:
    """What autograde's single writer does for each result (gradebook, autograded notebook, store)."""
    db_url = f"sqlite:///{folder / 'gradebook.db'}"
    folder.mkdir(parents=True, exist_ok=True)
    record_assignment(db_url, NB.assignment, [T])
    write_formgrader_config(db_url, folder / "autograded")
    writer = GradebookWriter(db_url, names)
    store = ResultStore(folder)
    for r in results:
        target = folder / "autograded" / r.student_id / NB.assignment / f"{NB.name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        text = feedback.inert_notebook(r.executed)
        stale = changed_answers(target, text, set(MANUAL))
        target.write_text(text)
        writer.write(r, stale)
        executed, r.executed = r.executed, None
        store.save(r)
        r.executed = executed
    writer.close()
    return db_url


def hand_grade(db_url: str, student: str, score: float, comment: str) -> None:
    with Gradebook(db_url, "attention") as gb:
        gb.find_grade(MANUAL[0], NB.name, NB.assignment, student).manual_score = score
        gb.find_comment(MANUAL[0], NB.name, NB.assignment, student).manual_comment = comment
        gb.db.commit()


def hidden_lines() -> set[str]:
    return {line.strip() for p in T.questions for s in p.segments if s.hidden for line in s.source.splitlines() if len(line.strip()) > 25}


def test_db_folder_is_a_course_folder_formgrader_accepts(tmp_path):
    db_url = grade_into(tmp_path / "out", [fabricate("ann")])
    config = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path / "out")).load_config()
    assert Path(config.CourseDirectory.root) == tmp_path / "out"  # Formgrader: the course root inside the server root
    assert config.CourseDirectory.db_url == db_url
    assert config.CourseDirectory.feedback_directory != "feedback"  # nbgrader's feedback never overwrites ours
    assert (tmp_path / "out" / config.CourseDirectory.source_directory / NB.assignment / NB.filename).exists()
    names = [p.__name__ for p in config.GenerateFeedback.preprocessors]
    assert names[0] == "ClearHiddenTests"
    autograded = (tmp_path / "out" / "autograded" / "ann" / NB.assignment / NB.filename).read_text()
    assert "BEGIN HIDDEN TESTS" not in autograded
    assert not [line for line in hidden_lines() if line in autograded]


def test_formgrader_counts_the_submissions_of_a_db_course_folder(tmp_path):
    """Manage Assignments counts student folders in nbgrader's submitted folder: it is the folder graded."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    submitted = tmp_path / "elsewhere" / "submitted"
    for sid in ("ann", "bob", "cy"):
        (submitted / sid / NB.assignment).mkdir(parents=True)
    out = tmp_path / "out"
    db_url = grade_into(out, [fabricate("ann"), fabricate("bob")])
    write_formgrader_config(db_url, out / "autograded", submitted)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(out)).load_config()
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    assert api.get_submitted_students(NB.assignment) == {"ann", "bob", "cy"}
    assert api.get_assignment(NB.assignment)["num_submissions"] == 3


def test_nbgrader_generate_feedback_leaks_no_hidden_test(tmp_path):
    """Formgrader's Generate Feedback button runs exactly this (nbgrader generate_feedback) in the course folder."""
    out = tmp_path / "out"
    grade_into(out, [fabricate("ann")])
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", NB.assignment, "--force"],
                         cwd=out, capture_output=True, text=True, timeout=300)
    pages = list((out / "nbgrader-feedback").rglob("*.html"))
    assert pages, run.stdout[-2000:] + run.stderr[-2000:]
    text = pages[0].read_text()
    assert "BEGIN HIDDEN TESTS" not in text
    assert not [line for line in hidden_lines() if line in text]


def test_feedback_command_merges_manual_scores_and_comments(tmp_path):
    out = tmp_path / "out"
    db_url = grade_into(out, [fabricate("ann"), fabricate("bob", full=False)])
    for r in (fabricate("ann"), fabricate("bob", full=False)):
        feedback.write(r, out / "feedback" / r.student_id / NB.assignment / f"{NB.name}.html", T)
    before = (out / "feedback" / "ann" / NB.assignment / f"{NB.name}.html").read_text()
    assert "point(s) to be graded by your instructor" in before
    hand_grade(db_url, "ann", 1.5, "Good: the variance <grows> with d.")
    run = subprocess.run([sys.executable, "-m", "grading", "feedback", "--out", str(out), "--db", str(out / "gradebook.db")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    page = (out / "feedback" / "ann" / NB.assignment / f"{NB.name}.html").read_text()
    assert "to be graded by your instructor" not in page.split("</table>")[0]
    assert "written answers: 1.5 so far" in page
    assert "Good: the variance &lt;grows&gt; with d." in page and "Scored by your instructor" in page
    assert "BEGIN HIDDEN TESTS" not in page and not [line for line in hidden_lines() if line in page]
    assert "to be graded by your instructor" in (out / "feedback" / "bob" / NB.assignment / f"{NB.name}.html").read_text()


def test_a_resubmitted_written_answer_loses_its_old_manual_score(tmp_path):
    out = tmp_path / "out"
    db_url = grade_into(out, [fabricate("ann")])
    hand_grade(db_url, "ann", 2, "Right.")
    grade_into(out, [fabricate("ann")])  # the same text graded again (--fresh): the human score stays
    export(out / "gradebook.db", tmp_path / "same.csv")
    rows = {r[3]: (r[4], r[6]) for r in csv.reader(open(tmp_path / "same.csv"))}
    assert rows[MANUAL[0]] == ("2", "graded")
    grade_into(out, [fabricate("ann", answer_text="A completely different answer, written later.")])
    export(out / "gradebook.db", tmp_path / "new.csv")
    rows = {r[3]: (r[4], r[6]) for r in csv.reader(open(tmp_path / "new.csv"))}
    assert rows[MANUAL[0]] == ("", "manual")
    with Gradebook(db_url, "attention") as gb:
        assert gb.find_comment(MANUAL[0], NB.name, NB.assignment, "ann").manual_comment.startswith("[written for an earlier")


def test_export_totals_and_lms_formats(tmp_path):
    out = tmp_path / "out"
    db_url = grade_into(out, [fabricate("12345"), fabricate("23456", full=False)], names={"12345": "Jane van Smith"})
    hand_grade(db_url, "12345", 1.5, "Nice & clear.")
    n = export(out / "gradebook.db", tmp_path / "final.csv")
    assert n == 2 * len(T.questions)
    rows = list(csv.reader(open(tmp_path / "final.csv")))
    assert rows[0] == HEADER
    totals = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(open(totals_path(tmp_path / "final.csv")))}
    auto = sum(p.points for p in T.questions if p.graded_by == "auto")
    full = sum(p.points for p in T.questions)
    pending_other = sum(p.points for p in T.questions if p.graded_by == "manual" and p.grade_id != MANUAL[0])
    assert float(totals[("12345", NB.assignment)]["score"]) == auto + 1.5
    assert float(totals[("12345", "all")]["max_score"]) == full
    assert float(totals[("12345", NB.assignment)]["to_grade_by_hand"]) == pending_other
    assert float(totals[("23456", "all")]["score"]) == 0

    export(out / "gradebook.db", tmp_path / "canvas.csv", "canvas")
    canvas = list(csv.reader(open(tmp_path / "canvas.csv")))
    assert canvas[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] and canvas[0][5] == NB.assignment
    assert canvas[1][0].strip() == "Points Possible" and float(canvas[1][5]) == full
    by_id = {r[1]: r for r in canvas[2:]}
    assert float(by_id["12345"][5]) == auto + 1.5 and float(by_id["23456"][5]) == 0
    assert by_id["12345"][0] == "Smith, Jane van" and by_id["23456"][0] == "23456"  # no name known: the id

    export(out / "gradebook.db", tmp_path / "moodle.csv", "moodle")
    moodle = list(csv.DictReader(open(tmp_path / "moodle.csv")))
    assert {"Identifier", "Grade", "Maximum Grade", "Last modified (grade)", "Feedback comments"} <= set(moodle[0])
    row = next(r for r in moodle if r["Identifier"] == "Participant 12345")
    assert float(row["Grade"]) == auto + 1.5 and "Nice & clear." in row["Feedback comments"]
    assert row["Full name"] == "Jane van Smith"
    from grading.reporting.gradebook import provisional

    warnings = provisional(out / "gradebook.db")  # export says what is not final yet
    assert any("to grade by hand" in w for w in warnings), warnings


def test_a_csv_or_another_course_is_not_a_gradebook(tmp_path):
    csv_file = tmp_path / "grades.csv"
    csv_file.write_text(",".join(HEADER) + "\n")
    with pytest.raises(NotAGradebook, match="not an SQLite database"):
        check_gradebook(f"sqlite:///{csv_file}")
    other = tmp_path / "other.db"
    with Gradebook(f"sqlite:///{other}", "physics101") as gb:
        gb.update_or_create_student("12345")
    with pytest.raises(NotAGradebook, match="another course"):
        check_gradebook(f"sqlite:///{other}")
    check_gradebook(f"sqlite:///{other}", allow_other_course=True)
    for args in (["export", "--db", str(csv_file), "--out", str(tmp_path / "x.csv")],
                 ["export", "--db", str(other), "--out", str(tmp_path / "x.csv")]):
        run = subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    sub = tmp_path / "sub" / "ann" / NB.assignment
    sub.mkdir(parents=True)
    (sub / NB.filename).write_text("{}")
    for db in (csv_file, other):
        run = subprocess.run([sys.executable, "-m", "grading", "autograde", str(tmp_path / "sub"), "--out", str(tmp_path / "o"),
                              "--db", str(db), "--no-sandbox"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    with sqlite3.connect(other) as conn:  # nothing was merged into the other course's gradebook
        assert conn.execute("SELECT count(*) FROM assignment").fetchone()[0] == 0


def test_inert_notebook_strips_hidden_tests():
    text = feedback.inert_notebook(nbformat.writes(T.fresh_notebook()))
    assert "BEGIN HIDDEN TESTS" not in text and feedback.HIDDEN_NOTE in text
    assert not [line for line in hidden_lines() if line in text]


def test_copy_of_course_db_folder_moves_with_its_config(tmp_path):
    """The config finds its folder from its own location: a copied results folder still opens."""
    grade_into(tmp_path / "out", [fabricate("ann")])
    shutil.copytree(tmp_path / "out", tmp_path / "moved")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path / "moved")).load_config()
    assert Path(config.CourseDirectory.root) == tmp_path / "moved"


def test_dashboard_with_the_gradebook_shows_human_scores(tmp_path):
    from grading.reporting.dashboard import rebuild

    out = tmp_path / "out"
    db_url = grade_into(out, [fabricate("ann")])
    page = rebuild(out).read_text()
    row = page.split(f"<tr><td>{MANUAL[0]}</td>")[1].split("</tr>")[0]
    assert row.endswith("<td>1</td>")  # awaiting a human
    hand_grade(db_url, "ann", 1.5, "ok")
    row = rebuild(out, out / "gradebook.db").read_text().split(f"<tr><td>{MANUAL[0]}</td>")[1].split("</tr>")[0]
    assert row.endswith("<td>0</td>") and "<td>1.5</td>" in row


def test_a_new_gradebook_is_stamped_with_the_revision_the_alembic_command_reports(tmp_path):
    """nbgrader asks the `alembic heads` command for the revision a new gradebook is stamped with; the grader
    reads it with alembic's API instead (seconds faster). Both must give the same revision, and
    nbgrader's own migration check must accept a gradebook the grader created."""
    from nbgrader import dbutil

    from grading.reporting import gradebook

    ini = tmp_path / "alembic.ini"
    dbutil.write_alembic_ini(str(ini), f"sqlite:///{tmp_path / 'unused.db'}")
    alembic = Path(sys.executable).parent / "alembic"
    heads = subprocess.run([str(alembic), "-c", str(ini), "heads"], capture_output=True, text=True, check=True).stdout
    assert gradebook._alembic_head() == heads.split()[0]
    db = tmp_path / "gradebook.db"
    with Gradebook(f"sqlite:///{db}"):
        pass
    stamped = sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchall()
    assert stamped == [(heads.split()[0],)]


def test_names_that_look_like_formulas_are_text_in_every_lms_file(tmp_path):
    """A second outside attacker's Moodle profile names, which collect's roster carries into the exports."""
    out = tmp_path / "out"
    grade_into(out, [fabricate("44444"), fabricate("55555")], names={"44444": "@SUM(1+1)*cmd Mallory", "55555": "=2+5+cmd"})
    export(out / "gradebook.db", tmp_path / "moodle.csv", "moodle")
    export(out / "gradebook.db", tmp_path / "canvas.csv", "canvas")
    moodle = {r["Identifier"]: r for r in csv.DictReader(open(tmp_path / "moodle.csv"))}
    canvas = {r[1]: r for r in list(csv.reader(open(tmp_path / "canvas.csv")))[2:]}
    cells = [moodle["Participant 44444"]["Full name"], moodle["Participant 55555"]["Full name"], canvas["44444"][0], canvas["55555"][0]]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells), cells
    assert moodle["Participant 55555"]["Full name"] == "'=2+5+cmd"  # still readable, as text
    assert float(moodle["Participant 55555"]["Grade"]) >= 0  # numbers stay numbers
