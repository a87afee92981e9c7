"""Students' ordinary habits and Colab's real file formats, graded through ``python -m grading autograde``.

Each habit (:data:`grading.tools.synthetic.HABITS`: ``%matplotlib inline``, ``%%time``,
``drive.mount``, ``!pip install``, ``%timeit``, ``display``, ``plt.show()``, ``%%capture``, an
indented ``%pip``, ``%config InlineBackend``, pip run through ``subprocess``) is written into *every* code answer of a
correct notebook, handed in once as Colab's ``.ipynb`` and once as Colab's ``.py``.  Colab's ``.py`` also comes with each header
(``Colab.``, ``Colaboratory.``, neither) and with CRLF line endings.  Every one must get full
marks, the ``.py`` the same grades as the ``.ipynb``, quickly (no pip retries, no timing loops),
and the report must say what was neutralised.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grading import course
from grading.intake.template import load_template
from grading.tools import synthetic

NB = course.notebooks("01_scoring_functions")[0]
T = load_template(NB.source, NB.assignment, NB.name)
FULL = sum(p.points for p in T.questions if p.graded_by == "auto")
TESTS = {p.grade_id for p in T.questions if p.graded_by == "auto"}

# what the report's `neutralised:` lines must mention for a habit (None: nothing to neutralise, it just works)
NOTED = {
    "matplotlib_inline": "%matplotlib inline",
    "cell_time": None,
    "drive": "drive.mount(...)` did nothing",
    "pip": "!pip install -q torchinfo` skipped",
    "timeit": "%timeit sum(range(1000))` ran its statement once",
    "display": None,
    "plt_show": None,
    "capture": None,
    "pip_in_block": "%pip install -q torchinfo` skipped",
    "config_inline": None,
    "pip_subprocess": None,  # pip run by the student's own code: it must fail at once (no network), not retry
}
# what the .py reader must say it restored (Colab commented these out)
RESTORED = {"matplotlib_inline": "%matplotlib inline", "cell_time": "%%time", "timeit": "%timeit", "capture": "%%capture",
            "pip_in_block": "%pip install", "config_inline": "%config InlineBackend"}
VARIANTS = {  # Colab .py variants of a correct notebook with no habit: (header, crlf)
    "py_colaboratory": ("Colaboratory", False), "py_no_generated_line": (None, False), "py_crlf": ("Colab", True),
}


def _every_answer(habit: str) -> dict[str, str]:
    sols = synthetic.solutions(NB)
    return {gid: synthetic.HABITS[habit](src) for gid, src in sols.items() if gid in synthetic._code_answers(NB)} | {
        gid: src for gid, src in sols.items() if gid not in synthetic._code_answers(NB)}


def _write(folder: Path, student: str, suffix: str, data: str) -> None:
    path = folder / student / NB.assignment / f"{NB.name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode())


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("habits")
    submitted, out = base / "submitted", base / "out"
    complete = synthetic.filled(NB, synthetic.solutions(NB))
    _write(submitted, "complete_ipynb", ".ipynb", synthetic.to_colab_ipynb(complete, NB.name))
    for habit in synthetic.HABITS:
        notebook = synthetic.filled(NB, _every_answer(habit))
        _write(submitted, f"{habit}_ipynb", ".ipynb", synthetic.to_colab_ipynb(notebook, NB.name))
        _write(submitted, f"{habit}_py", ".py", synthetic.to_colab_py(notebook, NB.name))
    for student, (header, crlf) in VARIANTS.items():
        _write(submitted, student, ".py", synthetic.to_colab_py(complete, NB.name, header=header, crlf=crlf))
    synthetic.make_class(submitted, {"kind_colab_ipynb": "colab_ipynb", "kind_colab_py": "colab_py"}, notebooks=[NB])
    proc = subprocess.run([sys.executable, "-m", "grading", "autograde", str(submitted), "--out", str(out),
                           "--db", str(out / "gradebook.db"), "--workers", "2", "--cell-timeout", "30", "--quiet"],
                          cwd=course.root(), capture_output=True, text=True, timeout=900)
    rows = list(csv.DictReader(open(out / "grades.csv"))) if (out / "grades.csv").exists() else []
    report = (out / "report").read_text() if (out / "report").exists() else ""
    sections = {m.group(1): m.group(0) for m in re.finditer(r"^== (\S+) / .*?(?=^== |\Z)", report, re.M | re.S)}
    return {"proc": proc, "rows": rows, "report": report, "sections": sections, "submitted": submitted}


def scores(graded, student: str) -> dict[str, tuple[str, str]]:
    return {r["question"]: (r["score"], r["status"]) for r in graded["rows"] if r["student_id"] == student}


def full_marks(graded, student: str) -> None:
    got = scores(graded, student)
    section = graded["sections"].get(student, "")
    assert got, f"{student} has no rows:\n{graded['report'][-3000:]}"
    auto = {q: s for q, s in got.items() if q in TESTS}
    assert all(st == "graded" for _, st in auto.values()) and sum(float(s) for s, _ in auto.values()) == FULL, section
    assert all(s == ("", "manual") for q, s in got.items() if q not in TESTS), got
    assert "execution:" not in section and "possible tampering" not in section, section


def test_the_class_is_graded(graded):
    assert graded["proc"].returncode == 0, graded["proc"].stderr[-3000:]
    assert len(graded["sections"]) == 1 + 2 * len(synthetic.HABITS) + len(VARIANTS) + 2, list(graded["sections"])


@pytest.mark.parametrize("habit", list(synthetic.HABITS))
def test_a_habit_in_every_answer_keeps_full_marks_in_colab_ipynb(graded, habit):
    full_marks(graded, f"{habit}_ipynb")
    section = graded["sections"][f"{habit}_ipynb"]
    if NOTED[habit]:
        assert any(NOTED[habit] in line for line in section.splitlines() if "neutralised:" in line), section


@pytest.mark.parametrize("habit", list(synthetic.HABITS))
def test_a_habit_in_every_answer_keeps_full_marks_in_colab_py(graded, habit):
    full_marks(graded, f"{habit}_py")
    section = graded["sections"][f"{habit}_py"]
    assert "(Colab .py download)" in section, section
    assert scores(graded, f"{habit}_py") == scores(graded, f"{habit}_ipynb")  # the .py grades as the .ipynb
    neutralised = [line for line in section.splitlines() if "neutralised:" in line]
    if NOTED[habit]:
        assert any(NOTED[habit] in line for line in neutralised), section
    if habit in RESTORED:
        assert any(RESTORED[habit] in line and "Colab had commented out" in line for line in neutralised), section


def test_colab_py_is_written_as_colab_writes_it(graded):
    """The generator's .py is Colab's: the note, magics at column 0 (an indented %pip too), a %%time cell
    commented out line by line (its empty lines as '# '), !cmd as written."""
    text = (graded["submitted"] / "pip_in_block_py" / NB.assignment / f"{NB.name}.py").read_text()
    assert text.startswith('# -*- coding: utf-8 -*-\n"""scoring_functions.ipynb\n\nAutomatically generated by Colab.\n\n'
                           "Original file is located at\n    https://colab.research.google.com/drive/")
    assert "# Commented out IPython magic to ensure Python compatibility.\n" in text
    assert "except ImportError:\n#     %pip install -q torchinfo\n" in text
    timed = (graded["submitted"] / "cell_time_py" / NB.assignment / f"{NB.name}.py").read_text()
    assert "# Commented out IPython magic to ensure Python compatibility.\n# %%time\n# def masked_softmax(" in timed
    assert "\n# \n" in timed and "\ndef masked_softmax(" not in timed
    assert "\n!pip install -q torchinfo\n" in (graded["submitted"] / "pip_py" / NB.assignment / f"{NB.name}.py").read_text()
    crlf = (graded["submitted"] / "py_crlf" / NB.assignment / f"{NB.name}.py").read_bytes()
    assert crlf.count(b"\r\n") == crlf.count(b"\n")
    old = (graded["submitted"] / "py_colaboratory" / NB.assignment / f"{NB.name}.py").read_text()
    assert "\nAutomatically generated by Colaboratory.\n" in old


@pytest.mark.parametrize("student", list(VARIANTS))
def test_every_colab_py_variant_grades_as_the_ipynb(graded, student):
    full_marks(graded, student)
    assert "(Colab .py download)" in graded["sections"][student]
    assert scores(graded, student) == scores(graded, "complete_ipynb")


@pytest.mark.parametrize("student", ["kind_colab_ipynb", "kind_colab_py"])
def test_the_synthetic_colab_students_keep_full_marks(graded, student):
    full_marks(graded, student)
    assert "neutralised:" in graded["sections"][student]


def _seconds(section: str) -> float:
    m = re.search(r"\]\s+([\d.]+)s", section.splitlines()[0])
    return float(m.group(1)) if m else 0.0


def test_habits_cost_no_time(graded):
    """No pip retries (no network), no timing loops: a habit student takes about as long as a plain one."""
    times = sorted(_seconds(section) for section in graded["sections"].values())
    plain = times[len(times) // 2]  # the median (the first submission of each worker also starts its sandbox)
    for habit in ("pip", "pip_in_block", "pip_subprocess", "timeit", "matplotlib_inline", "drive"):
        for suffix in ("ipynb", "py"):
            took = _seconds(graded["sections"][f"{habit}_{suffix}"])
            assert took < plain + 20, (habit, suffix, took, plain)


@pytest.mark.parametrize("line, once", [
    ("sum(range(10))", "-n1 -r1 sum(range(10))"),
    ("-n 1000 -r 7 f(x)", "-n1 -r1 f(x)"),
    ("-n1000 -o -q f(x, -1)", "-n1 -r1 -o -q f(x, -1)"),
    ("-p 3 -r5 1 + 1", "-n1 -r1 -p 3 1 + 1"),
])
def test_timeit_runs_its_statement_once(line, once):
    from grading.sandboxed.runner import _once

    assert _once(line) == once
