"""``python -m grading bench`` on a tiny class: the output's format, not the speed (not a timed test).

Two students (one complete, one partial) x every notebook, graded by plain ``nbgrader autograde``
and by our pipeline; about a minute.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from grading import course
from grading.tools import bench

pytestmark = pytest.mark.slow


def test_class_kinds_mix():
    kinds = bench.class_kinds(40)
    counts = {k: list(kinds.values()).count(k) for k in set(kinds.values())}
    assert counts == {"complete": 28, "partial": 8, "blank": 4}
    assert list(bench.class_kinds(2).values()) == ["complete", "partial"]


def test_bench_two_students(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "grading", "bench", "--students", "2", "--out", str(out)],
                          cwd=course.root(), capture_output=True, text=True, timeout=600)
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr
    lines = text.strip().splitlines()
    assert re.fullmatch(r"speedup vs nbgrader: \d+\.\dx", lines[-1]), lines[-1]

    n = 2 * len(course.notebooks())
    seconds = {}
    for who in ("nbgrader autograde", "ours"):
        match = re.search(rf"^{who}: +(\d+) submissions in ([\d.]+) s = ([\d.]+) submissions/min", text, re.M)
        assert match, f"no rate line for {who}:\n{text}"
        assert int(match[1]) == n
        assert float(match[2]) > 0 and float(match[3]) > 0
        assert float(match[3]) == pytest.approx(60 * n / float(match[2]), abs=0.1)  # both printed to 0.1
        seconds[who] = float(match[2])
    # the ratio of the wall-clock times, as printed: each time to 0.1 s, the ratio to 0.1
    ratio = float(lines[-1].split(": ")[1].rstrip("x"))
    expected = seconds["nbgrader autograde"] / seconds["ours"]
    assert abs(ratio - expected) <= 0.05 + expected * 0.05 * (1 / seconds["nbgrader autograde"] + 1 / seconds["ours"]) + 1e-9

    for part in ("start", "execution", "intake", "scoring", "writing", "overhead", "= wall"):
        assert re.search(rf"^  {re.escape(part)} +[\d.]+ s", text, re.M), f"no `{part}` in the breakdown:\n{text}"
    # complete and partial notebooks: both graders agree on every question and every student's total
    assert re.search(rf"^agreement: {n}/{n} submissions with the same score on every question, "
                     r"2/2 students with the same total \(mean [\d.]+ of \d+ autograded points\)$", text, re.M), text
    # --out kept the work, and nbgrader graded the very files we did
    assert (out / "course" / "gradebook.db").exists() and (out / "ours" / "grades.csv").exists()
    def notebooks_in(folder):
        return sorted(p.relative_to(folder) for p in folder.rglob("*.ipynb"))

    assert notebooks_in(out / "course" / "autograded") == notebooks_in(out / "course" / "submitted")
