"""The grading pipeline end to end, through real kernels: ``python -m grading autograde``.

Kernels are slow (a few seconds each with torch), so one synthetic class of notebook 1 is
graded once (module fixture) through the command line, and every test reads its outputs.
A second, smaller class covers every notebook that exists (discovered through grading.course).
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grading import course
from grading.intake.template import load_template
from grading.reporting.table import HEADER
from grading.tools import synthetic

pytestmark = pytest.mark.slow

ROOT = course.root()
NB1 = next(nb for nb in course.notebooks() if nb.assignment.startswith("01_"))
T1 = load_template(NB1.source, NB1.assignment, NB1.name)

# Typical wrong answers (each should cost its own question only) and correct alternatives.
WRONG = {
    # transposed result: the visible shape check fails
    "batch_scores": "def batch_scores(queries, keys):\n    return torch.bmm(keys, queries.transpose(1, 2))\n",
    # right types, wrong values: only the hidden tests notice
    "bmm_vs_matmul": "matmul_shape = (2, 3, 4)\nbmm_accepts_2d = True\n",
    # forgot the 1/sqrt(d) scale: shapes and masks are fine, the hidden comparison is not
    "DotProductAttention": (
        "class DotProductAttention(nn.Module):\n"
        "    def __init__(self, dropout):\n"
        "        super().__init__()\n"
        "        self.dropout = nn.Dropout(dropout)\n\n"
        "    def forward(self, queries, keys, values, valid_lens=None):\n"
        "        scores = torch.bmm(queries, keys.transpose(1, 2))\n"
        "        self.attention_weights = masked_softmax(scores, valid_lens)\n"
        "        return torch.bmm(self.dropout(self.attention_weights), values)\n"
    ),
}
ALTERNATIVE = {
    "masked_softmax": (
        "def masked_softmax(X, valid_lens):\n"
        "    if valid_lens is None:\n"
        "        return X.softmax(-1)\n"
        "    lens = valid_lens.to(X.device)\n"
        "    if lens.dim() == 1:\n"
        "        lens = lens[:, None].expand(X.shape[0], X.shape[1])\n"
        "    keep = torch.arange(X.shape[-1], device=X.device)[None, None, :] < lens[..., None]\n"
        "    minus_inf = torch.tensor(float('-inf'), dtype=X.dtype, device=X.device)\n"
        "    return torch.nan_to_num(torch.where(keep, X, minus_inf).softmax(-1), nan=0.0)\n"
    ),
    # correct, but chatty on stderr and with a warning: must keep full marks (nbgrader gives 0)
    "batch_scores": (
        "import sys\nimport warnings\n\n"
        "def batch_scores(queries, keys):\n"
        "    warnings.warn('batch_scores: einsum instead of bmm')\n"
        "    print('debug: batch_scores called', file=sys.stderr)\n"
        "    return torch.einsum('bnd,bmd->bnm', queries, keys)\n"
    ),
    "DotProductAttention": (
        "class DotProductAttention(nn.Module):\n"
        "    def __init__(self, dropout):\n"
        "        super().__init__()\n"
        "        self.dropout = nn.Dropout(dropout)\n\n"
        "    def forward(self, queries, keys, values, valid_lens=None):\n"
        "        scores = queries @ keys.transpose(-2, -1) / queries.shape[-1] ** 0.5\n"
        "        self.attention_weights = masked_softmax(scores, valid_lens)\n"
        "        return self.dropout(self.attention_weights) @ values\n"
    ),
}
CLASS = {
    "complete": "complete", "blank": "blank", "partial": "partial", "colab_ipynb": "colab_ipynb",
    "colab_py": "colab_py", "stripped": "stripped", "duplicated": "duplicated", "pasted": "pasted",
    "reordered": "reordered", "syntax_error": "syntax_error", "crash": "crash", "timeout": "timeout",
    "hang": "hang", "invalid_json": "invalid_json", "empty": "empty",
    "wrong": "complete", "alternative": "complete",
}


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("class1")
    submitted, out = base / "submitted", base / "out"
    synthetic.make_class(submitted, CLASS, notebooks=[NB1], overrides={"wrong": WRONG, "alternative": ALTERNATIVE})
    (submitted / "complete" / NB1.assignment / "timestamp.txt").write_text("2026-11-20 10:33:12.000000 UTC")
    (submitted / "missing" / NB1.assignment).mkdir(parents=True)  # handed in the assignment, not the notebook
    before = digest(submitted)
    proc = run_cli("autograde", str(submitted), "--out", str(out), "--db", str(out / "gradebook.db"),
                   "--workers", "2", "--cell-timeout", "12")
    rows = list(csv.reader(open(out / "grades.csv"))) if (out / "grades.csv").exists() else []
    return {"proc": proc, "out": out, "submitted": submitted, "before": before, "rows": rows}


def scores(graded, student) -> dict[str, tuple[str, str]]:
    return {r[3]: (r[4], r[6]) for r in graded["rows"][1:] if r[0] == student}


def auto_total(graded, student) -> float:
    return sum(float(s) for q, (s, st) in scores(graded, student).items() if st != "manual" and q.startswith("test_"))


FULL = sum(p.points for p in T1.questions if p.graded_by == "auto")
TESTS = [p.grade_id for p in T1.questions if p.graded_by == "auto"]
MANUAL = [p.grade_id for p in T1.questions if p.graded_by == "manual"]
POINTS = {p.grade_id: p.points for p in T1.questions}


def test_cli_exits_0_with_a_summary(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "grading:" in proc.stderr  # the progress (plain lines: not a terminal)
    assert "17 submission(s) from 17 student(s)" in proc.stderr and "repaired" in proc.stderr and "errors" in proc.stderr


def test_submitted_files_are_unchanged(graded):
    assert digest(graded["submitted"]) == graded["before"]


def test_grades_csv_contract(graded):
    rows = graded["rows"]
    assert rows[0] == HEADER
    keys = [(r[0], r[1], r[2], r[3]) for r in rows[1:]]
    assert len(keys) == len(set(keys))
    for student in CLASS:  # every question of every submitted notebook has a row, broken ones included
        assert sorted(k[3] for k in keys if k[0] == student) == sorted(p.grade_id for p in T1.questions), student
    for r in rows[1:]:
        assert r[1] == NB1.assignment and r[2] == NB1.name
        assert r[6] in ("graded", "manual", "error")
        assert float(r[5]) == POINTS[r[3]]
        if r[6] == "manual":
            assert r[4] == ""
        else:
            assert 0 <= float(r[4]) <= float(r[5])


@pytest.mark.parametrize("student", ["complete", "colab_ipynb", "colab_py", "stripped", "duplicated", "pasted", "reordered", "alternative"])
def test_solutions_score_full_marks_through_every_intake_path(graded, student):
    got = scores(graded, student)
    assert {q: got[q] for q in TESTS} == {q: (f"{POINTS[q]:g}", "graded") for q in TESTS}, got
    assert all(got[q] == ("", "manual") for q in MANUAL)


def test_blank_scores_zero_everywhere(graded):
    got = scores(graded, "blank")
    assert all(s == "0" and st == "graded" for s, st in got.values()), got
    section = (graded["out"] / "report").read_text().split("== blank /")[1].split("\n== ")[0]
    assert "not answered yet" in section and "`_ask`" not in section, section  # never a name of the grader's own code


def test_wrong_answers_lose_their_own_questions_only(graded):
    got = scores(graded, "wrong")
    lost = {q for q in TESTS if float(got[q][0]) < POINTS[q]}
    assert lost == {"test_batch_scores", "test_bmm_vs_matmul", "test_DotProductAttention"}, got
    assert all(got[q] == (f"{POINTS[q]:g}", "graded") for q in TESTS if q not in lost)


def test_partial_and_syntax_error(graded):
    assert 0 < auto_total(graded, "partial") < FULL
    got = scores(graded, "syntax_error")
    broken = synthetic._middle_answer(NB1)
    broken_test = next(p.grade_id for p in T1.questions if p.answer == broken)
    assert got[broken_test] == ("0", "graded")
    assert auto_total(graded, "syntax_error") == FULL - POINTS[broken_test]


def test_kernel_death_keeps_the_grades_of_cells_that_ran(graded):
    """crash: os._exit in the middle answer; hang: a loop that ignores SIGINT, killed after the timeout."""
    middle = T1.parts[synthetic._middle_answer(NB1)].index
    for student in ("crash", "hang"):
        got = scores(graded, student)
        for p in T1.questions:
            if p.graded_by != "auto":
                continue
            if p.index < middle:
                assert got[p.grade_id] == (f"{p.points:g}", "graded"), (student, got)
            else:
                assert got[p.grade_id] == ("0", "error"), (student, got)
    report = (graded["out"] / "report").read_text()
    assert "the kernel died while running cell" in report
    assert "did not respond to an interrupt" in report


def test_timeout_costs_only_that_question(graded):
    got = scores(graded, "timeout")
    timed_out = next(p.grade_id for p in T1.questions if p.answer == synthetic._middle_answer(NB1))
    assert got[timed_out] == ("0", "graded")
    assert auto_total(graded, "timeout") == FULL - POINTS[timed_out]
    # after a hidden check (the earlier questions have some) the seconds are not said: they could carry a hidden input
    assert "timed out after its time limit and was interrupted" in (graded["out"] / "report").read_text()


def test_unreadable_files_are_error_rows_and_the_others_are_graded(graded):
    for student in ("invalid_json", "empty", "missing"):
        assert all(v == ("0", "error") for v in scores(graded, student).values())
    report = (graded["out"] / "report").read_text()
    assert "not valid JSON" in report and "empty file" in report
    assert f"missing/{NB1.assignment}/{NB1.name} was not handed in" in report


def test_report_says_what_was_repaired(graded):
    report = (graded["out"] / "report").read_text()
    for needle in ("no cell has nbgrader metadata", "kernel `conda-env-attention-py` replaced",
                   "duplicate grade_id", "the answer cell still holds the stub", "restored from the release",
                   "Colab .py download", "Colab notebook (nbformat 4.0)"):
        assert needle in report, needle


def test_feedback_shows_checks_never_hidden_tests(graded):
    out = graded["out"]
    hidden_lines = set()
    for p in T1.questions:
        for seg in p.segments:
            if seg.hidden:
                hidden_lines |= {line.strip() for line in seg.source.splitlines() if len(line.strip()) > 25}
    assert hidden_lines
    pages = sorted((out / "feedback").rglob("*.html"))
    assert len(pages) == len(CLASS) + 1  # + the student whose notebook is missing
    for page in pages:
        text = page.read_text()
        assert "BEGIN HIDDEN TESTS" not in text
        if "Traceback (most recent call last)" in text:  # only a visible check's traceback may be shown
            assert "A visible check failed" in text
        leaked = [line for line in hidden_lines if line in text]
        assert not leaked, f"{page}: hidden test source {leaked[:2]}"
    wrong = (out / "feedback" / "wrong" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "Further checks run after hand-in: <span class=\"bad\">failed</span>" in wrong
    # a hidden check's reason keeps what was expected, not what came back (the student's code chose that)
    assert "matmul_shape: expected the shape matmul returns, got something else" in wrong
    # a visible check after a hidden one: what was expected, not what the student's code returned
    assert "batch_scores(Q, K): expected shape (2, 3, 5), got something else" in wrong
    complete = (out / "feedback" / "complete" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "visible checks passed" in complete and "to be graded by your instructor" in complete


def test_feedback_escapes_student_text(graded):
    page = (graded["out"] / "feedback" / "complete" / NB1.assignment / f"{NB1.name}.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;" in page or "&gt;" in page or "&quot;" in page or "&#x27;" in page


def test_gradebook_and_export(graded, tmp_path):
    out = graded["out"]
    proc = run_cli("export", "--db", str(out / "gradebook.db"), "--out", str(tmp_path / "final.csv"))
    assert proc.returncode == 0, proc.stderr
    exported = list(csv.reader(open(tmp_path / "final.csv")))
    assert exported[0] == HEADER
    assert sorted(exported[1:]) == sorted(graded["rows"][1:])
    assert (out / "autograded" / "complete" / NB1.assignment / f"{NB1.name}.ipynb").exists()
    assert (out / "nbgrader_config.py").exists()


def test_manual_grades_reach_the_export(graded, tmp_path):
    """A human grades a written answer in the gradebook (as formgrader does): export shows it."""
    import shutil

    from nbgrader.api import Gradebook

    db = tmp_path / "copy.db"
    shutil.copy(graded["out"] / "gradebook.db", db)
    with Gradebook(f"sqlite:///{db}", "attention") as gb:
        grade = gb.find_grade(MANUAL[0], NB1.name, NB1.assignment, "complete")
        assert grade.auto_score is None and grade.needs_manual_grade
        grade.manual_score = 1.5
        gb.db.commit()
        sub = gb.find_submission(NB1.assignment, "complete")
        assert str(sub.timestamp).startswith("2026-11-20 10:33:12")
    assert run_cli("export", "--db", str(db), "--out", str(tmp_path / "final.csv")).returncode == 0
    rows = {(r[0], r[3]): (r[4], r[6]) for r in csv.reader(open(tmp_path / "final.csv"))}
    assert rows[("complete", MANUAL[0])] == ("1.5", "graded")
    assert rows[("colab_py", MANUAL[0])] == ("", "manual")


def test_results_json_per_submission(graded):
    data = json.loads((graded["out"] / "results" / "complete" / NB1.assignment / f"{NB1.name}.json").read_text())
    assert data["student_id"] == "complete" and data["error"] is None
    assert {"read", "start", "run", "total"} <= set(data["timings"])


def test_bad_usage_is_not_exit_0(tmp_path):
    assert run_cli("autograde", str(tmp_path / "nope"), "--out", str(tmp_path / "o")).returncode == 2
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / f"{NB1.name}.ipynb").write_text("{}")  # not in the student/assignment layout
    empty = run_cli("autograde", str(tmp_path / "flat"), "--out", str(tmp_path / "o"), "--db", str(tmp_path / "g.db"))
    assert empty.returncode == 2 and "expected" in empty.stderr
    assert run_cli("autograde", str(tmp_path)).returncode == 2
    assert run_cli("export", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.csv")).returncode == 2


def test_discovery_accepts_a_renamed_file_and_prefers_ipynb(tmp_path):
    from grading.intake.discover import discover
    from grading.options import GradeOptions

    folder = tmp_path / "ann" / NB1.assignment
    folder.mkdir(parents=True)
    (folder / f"Copy of {NB1.name}.ipynb").write_text("{}")
    folder2 = tmp_path / "bob" / NB1.assignment
    folder2.mkdir(parents=True)
    (folder2 / f"{NB1.name}.ipynb").write_text("{}")
    (folder2 / f"{NB1.name}.py").write_text("")
    found = discover(tmp_path, GradeOptions())
    tasks = {t.student_id: t for t in found.tasks}
    assert tasks["ann"].submission.endswith(f"Copy of {NB1.name}.ipynb") and "graded as" in tasks["ann"].note
    assert tasks["bob"].submission.endswith(".ipynb") and "both" in tasks["bob"].note


# ------------------------------------------------------------------------------------------
# every notebook that exists


@pytest.fixture(scope="module")
def every_notebook(tmp_path_factory):
    from grading.options import GradeOptions
    from grading.pipeline import autograde_class

    base = tmp_path_factory.mktemp("every")
    students = synthetic.make_class(base / "submitted", {"sol": "complete", "blank": "blank", "py": "colab_py"})
    summary = autograde_class(base / "submitted", base / "out", workers=2, db=base / "out" / "gradebook.db",
                              options=GradeOptions(cell_timeout=60), progress=False)
    return students, summary


@pytest.mark.parametrize("nb", course.notebooks(), ids=[nb.name for nb in course.notebooks()])
def test_every_notebook_full_marks_and_zero(every_notebook, nb):
    students, summary = every_notebook
    results = {r.student_id: r for r in summary.results if r.notebook == nb.name}
    assert set(results) == set(students)
    for student, kind in students.items():
        why = synthetic.unexpected(kind, results[student])
        assert why is None, f"{student}/{nb.name}: {why}; {[(q.grade_id, q.reason) for q in results[student].questions if q.reason]}"
