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
from harness import check_verdict, grade_id, load, verdicts

from grading import course
from grading.intake.template import load_template, module_binds, parse, used_and_bound
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


def _reads(source: str) -> set[str]:
    """The names a cell reads and does not bind itself, builtins included (an answer may rebind one)."""
    tree = parse(source)
    if tree is None:
        return set()
    used, bound = used_and_bound(tree)
    return used - bound


def _upstream(solution, check: str) -> set[str]:
    """Every name the check cell ``check`` can read: its own, and those of the earlier cells that bind them."""
    code = [cell for cell in solution.cells if cell.cell_type == "code"]
    position = next(i for i, cell in enumerate(code) if grade_id(cell) == check)
    binds = [module_binds(parse(cell.source)) for cell in code[:position]]
    names, todo = set(), _reads(code[position].source)
    while todo:
        name = todo.pop()
        names.add(name)
        for cell, bound in zip(code[:position], binds):
            if name in bound:
                todo |= _reads(cell.source) - names
    return names


def pack(solution, cases) -> list[list[int]]:
    """Cases grouped into submissions, so that no case in a submission can reach another one's check.

    Two cases share a submission only when they replace different cells and neither binds a name
    the other's check can read (directly, or through the cells before it that bind what it reads).
    Each submission is then graded once for several questions; the fixture also checks that every
    case keeps, in its submission, the in-process verdict it has alone.
    """
    answers = {grade_id(c): c.source for c in solution.cells if grade_id(c)}
    binds = [set().union(*(module_binds(parse(src)) | module_binds(parse(answers.get(gid, ""))) for gid, src in replace.items()))
             for (_a, _c, _l, replace, _g) in cases]
    upstream = {check: _upstream(solution, check) for check in {case[1] for case in cases}}
    packs: list[list[int]] = []
    for i, (_a, check, _l, replace, _g) in enumerate(cases):
        for members in packs:
            if all(not set(replace) & set(cases[j][3]) and not binds[i] & upstream[cases[j][1]] and not binds[j] & upstream[check]
                   for j in members):
                members.append(i)
                break
        else:
            packs.append([i])
    return packs


@pytest.fixture(scope="module", params=list(PATHS))
def agreement(request, tmp_path_factory):
    assignment = request.param
    nb = course.notebooks(assignment)[0]
    solution = load(PATHS[assignment])
    cases = [(*case, False) for case in WRONG[assignment]] + [(*case, True) for case in ALTERNATIVES[assignment]]
    packs = pack(solution, cases)
    base = tmp_path_factory.mktemp(f"agree{assignment[:2]}")
    replaces = []
    for k, members in enumerate(packs):
        replace = {gid: src for i in members for gid, src in cases[i][3].items()}
        replaces.append(replace)
        target = base / "submitted" / f"pack{k:03d}" / nb.assignment / f"{nb.name}.ipynb"
        target.parent.mkdir(parents=True)
        target.write_bytes(synthetic.submission(nb, "complete", overrides=replace)[1])
    proc = subprocess.Popen([sys.executable, "-m", "grading", "autograde", str(base / "submitted"), "--out", str(base / "out"),
                             "--db", str(base / "out" / "gradebook.db"), "--workers", "2", "--quiet", "--cell-timeout", "60"],
                            cwd=course.root(), stdout=subprocess.DEVNULL, stderr=open(base / "stderr", "w"))
    # while the class is graded: each case alone, and each submission of several cases, in this process
    alone = [check_verdict(solution, replace, check) is None for (_a, check, _l, replace, _g) in cases]
    packed = [verdicts(solution, replace).checks if len(members) > 1 else None for members, replace in zip(packs, replaces)]
    assert proc.wait(timeout=1800) == 0, (base / "stderr").read_text()[-2000:]
    where = {i: k for k, members in enumerate(packs) for i in members}
    moved = [f"{label} (with {', '.join(cases[j][2] for j in packs[where[i]] if j != i)})"
             for i, (_a, check, label, _r, _g) in enumerate(cases)
             if packed[where[i]] is not None and (packed[where[i]][check] is None) != alone[i]]
    assert not moved, f"packing changed these verdicts, so pack() missed a dependency: {moved}"
    scores = {(r["student_id"], r["question"]): float(r["score"] or 0) for r in csv.DictReader(open(base / "out" / "grades.csv"))}
    points = {q.grade_id: q.points for q in load_template(nb.source, nb.assignment, nb.name).questions}
    rows = []
    for i, (_answer, check, label, _replace, good) in enumerate(cases):
        score = scores[(f"pack{where[i]:03d}", check)]
        rows.append((label, good, alone[i], score >= points[check] - 1e-9, score, points[check]))
    return rows


def test_in_process_and_sandboxed_verdicts_agree(agreement):
    disagree = [row for row in agreement if row[2] != row[3]]
    assert not disagree, "\n".join(f"{label}: in-process {'pass' if a else 'fail'}, sandboxed {s:g}/{p:g}"
                                   for label, _, a, _b, s, p in disagree)


def test_wrong_answers_lose_points_and_alternatives_keep_full_marks(agreement):
    for label, good, _in_process, sandboxed, score, points in agreement:
        assert sandboxed == good, f"{label}: {score:g}/{points:g}"


def test_packing_keeps_an_answer_apart_from_the_checks_that_call_it():
    solution = load(PATHS["01_scoring_functions"])
    cases = [(*case, False) for case in WRONG["01_scoring_functions"]] + [(*case, True) for case in ALTERNATIVES["01_scoring_functions"]]
    packs = pack(solution, cases)
    assert len(packs) < len(cases)  # independent questions do share submissions
    for members in packs:
        answers = [cases[i][0] for i in members]
        assert len(answers) == len(set(answers)), answers  # one case per answer cell
        # DotProductAttention and AdditiveAttention call masked_softmax: a wrong one would decide their checks
        assert not ("masked_softmax" in answers and {"DotProductAttention", "AdditiveAttention"} & set(answers)), answers
