"""In-process and sandboxed grading agree on every wrong and every alternative answer the project has.

The notebook tests (tests/notebooks/test_notebook0*.py) judge their wrong and correct alternative answers
in-process, as a student's own run of the check would.  Here every one of them is also handed in
and graded through ``python -m grading autograde`` (sandbox, trusted verdicts): a question earns
full marks there exactly when its check passes in-process.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap

import pytest
import test_notebook01 as nb01
import test_notebook02 as nb02
import test_notebook03 as nb03
from harness import check_verdict, load

from grading import course
from grading.intake.template import load_template
from grading.tools import synthetic

PATHS = {
    "01_scoring_functions": "solutions/01_scoring_functions/scoring_functions.ipynb",
    "02_scoring_exercises": "solutions/02_scoring_exercises/scoring_exercises.ipynb",
    "03_understanding_attention": "solutions/03_understanding_attention/understanding_attention.ipynb",
}

ALTERNATIVES = {
    "01_scoring_functions": (
        [("masked_softmax", "test_masked_softmax", f"alternative masked_softmax: {n}",
          {"masked_softmax": nb01.MASKED_SOFTMAX_HEAD + textwrap.indent(nb01.code(s), "    ")})
         for n, s in nb01.GOOD_MASKED_SOFTMAX.items()]
        + [("batch_scores", "test_batch_scores", f"alternative batch_scores: {n}", {"batch_scores": nb01.batch_scores(s)})
           for n, s in nb01.GOOD_BATCH_SCORES.items()]
        + [("DotProductAttention", "test_DotProductAttention", f"alternative DotProductAttention: {n}",
            {"DotProductAttention": nb01.dot_attention(s)}) for n, s in nb01.GOOD_DOT.items()]
        + [("AdditiveAttention", "test_AdditiveAttention", f"alternative AdditiveAttention: {n}", {"AdditiveAttention": s})
           for n, s in nb01.GOOD_ADDITIVE.items()]
    ),
    "02_scoring_exercises": (
        [("DistanceAttention", "test_DistanceAttention", f"alternative DistanceAttention: {n}",
          {"DistanceAttention": nb02._distance(b)}) for n, b in nb02.DISTANCE_RIGHT.items()]
        + [("DiffDimDotProductAttention", "test_DiffDimDotProductAttention", f"alternative DiffDim: {n}",
            {"DiffDimDotProductAttention": s}) for n, s in nb02.DIFFDIM_RIGHT.items()]
        + [("attention_flops", "test_attention_flops", f"alternative flops: {n}", {"attention_flops": nb02._flops(e)})
           for n, e in nb02.FLOPS_RIGHT.items()]
        + [("attention_memory_traffic", "test_attention_memory_traffic", f"alternative traffic: {n}",
            {"attention_memory_traffic": nb02._traffic(e)}) for n, e in nb02.TRAFFIC_RIGHT.items()]
    ),
    "03_understanding_attention": [(gid, f"test_{gid}", f"alternative {gid}: {label}", {gid: textwrap.dedent(src)})
                                   for gid, rows in nb03.RIGHT.items() for label, src in rows.items()],
}
WRONG = {"01_scoring_functions": nb01.WRONG_ANSWERS, "02_scoring_exercises": nb02.WRONG_ANSWERS,
         "03_understanding_attention": nb03.WRONG_ANSWERS}


@pytest.fixture(scope="module", params=list(PATHS))
def agreement(request, tmp_path_factory):
    assignment = request.param
    nb = course.notebooks(assignment)[0]
    cases = [(*case, False) for case in WRONG[assignment]] + [(*case, True) for case in ALTERNATIVES[assignment]]
    base = tmp_path_factory.mktemp(f"agree{assignment[:2]}")
    for i, (_answer, _check, _label, replace, _good) in enumerate(cases):
        target = base / "submitted" / f"case{i:03d}" / nb.assignment / f"{nb.name}.ipynb"
        target.parent.mkdir(parents=True)
        target.write_bytes(synthetic.submission(nb, "complete", overrides=replace)[1])
    proc = subprocess.Popen([sys.executable, "-m", "grading", "autograde", str(base / "submitted"), "--out", str(base / "out"),
                             "--db", str(base / "out" / "gradebook.db"), "--workers", "2", "--quiet", "--cell-timeout", "60"],
                            cwd=course.root(), stdout=subprocess.DEVNULL, stderr=open(base / "stderr", "w"))
    solution = load(PATHS[assignment])  # while the class is graded: the same answers in this process
    in_process = [check_verdict(solution, replace, check) is None for (_a, check, _l, replace, _g) in cases]
    assert proc.wait(timeout=1800) == 0, (base / "stderr").read_text()[-2000:]
    scores = {(r["student_id"], r["question"]): float(r["score"] or 0) for r in csv.DictReader(open(base / "out" / "grades.csv"))}
    points = {q.grade_id: q.points for q in load_template(nb.source, nb.assignment, nb.name).questions}
    rows = []
    for i, (_answer, check, label, _replace, good) in enumerate(cases):
        sandboxed = scores[(f"case{i:03d}", check)] >= points[check] - 1e-9
        rows.append((label, good, in_process[i], sandboxed, scores[(f"case{i:03d}", check)], points[check]))
    return rows


def test_in_process_and_sandboxed_verdicts_agree(agreement):
    disagree = [row for row in agreement if row[2] != row[3]]
    assert not disagree, "\n".join(f"{label}: in-process {'pass' if a else 'fail'}, sandboxed {s:g}/{p:g}"
                                   for label, _, a, _b, s, p in disagree)


def test_wrong_answers_lose_points_and_alternatives_keep_full_marks(agreement):
    for label, good, _in_process, sandboxed, score, points in agreement:
        assert sandboxed == good, f"{label}: {score:g}/{points:g}"
