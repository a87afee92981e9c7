"""OUT/dashboard.html from fabricated results (no kernels): every section, similarity that sees through
renaming, escaping of students' text, and a class-sized page in reasonable time."""

from __future__ import annotations

import re
import time

from grading import course
from grading.intake.template import load_template
from grading.model import Failure, GradedBy, QuestionResult, Status, SubmissionResult
from grading.reporting import dashboard

NB = course.notebooks()[0]
T = load_template(NB.source, NB.assignment, NB.name)
CODE = next(p.grade_id for p in T.answers if p.cell_type == "code")
TEST = next(p.grade_id for p in T.questions if p.answer == CODE)

ORIGINAL = '''def masked_softmax(X, valid_lens):
    # mask then softmax
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    shape = X.shape
    lens = torch.repeat_interleave(valid_lens, shape[1]) if valid_lens.dim() == 1 else valid_lens.reshape(-1)
    flat = X.reshape(-1, shape[-1])
    mask = torch.arange(shape[-1])[None, :] < lens[:, None]
    flat = flat.masked_fill(~mask, -1e6)
    return torch.softmax(flat.reshape(shape), dim=-1)
'''
RENAMED = ORIGINAL.replace("X", "scores").replace("lens", "L").replace("flat", "f2").replace("# mask then softmax", "# mine!")
OTHER = '''def masked_softmax(X, valid_lens):
    out = []
    for b in range(X.shape[0]):
        row = X[b]
        n = int(valid_lens[b]) if valid_lens is not None else row.shape[-1]
        w = torch.zeros_like(row)
        w[..., :n] = torch.softmax(row[..., :n], dim=-1)
        out.append(w)
    return torch.stack(out)
'''


def result(student: str, answer: str, score: float, **extra) -> SubmissionResult:
    r = SubmissionResult(student, NB.assignment, NB.name, f"/x/{student}.ipynb", timings={"total": 4.0 + len(student)})
    for p in T.questions:
        if p.graded_by == "manual":
            q = QuestionResult(p.grade_id, GradedBy.MANUAL, p.points, None, Status.MANUAL, answer=p.grade_id, title=p.title)
        else:
            got = score if p.grade_id == TEST else p.points
            q = QuestionResult(p.grade_id, GradedBy.AUTO, p.points, got, Status.GRADED, answer=p.answer, title=p.title)
            if got < p.points:
                q.hidden_error, q.reason = "masked entries are not zero", "hidden checks failed: masked entries are not zero"
        r.questions.append(q)
    r.answers, r.answered = {CODE: answer}, {CODE: True}
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_every_section_and_similarity_through_renaming():
    results = [
        result("ann", ORIGINAL, 0.0),
        result("bob", RENAMED, 0.0, tampering=["answer cell: replaces torch.allclose"]),
        result("cat", OTHER, 4.0),
        result("<script>alert(1)</script>", "<img src=x onerror=alert(1)>" + OTHER, 4.0),
    ]
    missing = SubmissionResult("dan", NB.assignment, NB.name, "", error="notebook not handed in", failure=Failure.MISSING)
    missing.questions = [QuestionResult(p.grade_id, GradedBy(p.graded_by), p.points, 0.0, Status.ERROR) for p in T.questions]
    page = dashboard.render([*results, missing], absent=["eve has no 02/x, which 4 other student(s) handed in"])
    for heading in ("Score distribution", "Most common failure reasons", "Students missing or with errors",
                    "Tampering flags", "Time per submission", "Answer similarity"):
        assert heading in page
    assert "masked entries are not zero" in page and "ann, bob" in page  # the reason, its count and who
    assert "replaces torch.allclose" in page and "eve has no 02/x" in page and "not handed in" in page
    assert "<tr><td>eve</td><td>02/x</td><td>no submission</td>" in page  # the notebook column is filled in
    pairs = dashboard.similar_pairs({r.student_id: r.answers[CODE] for r in results}, code=True)
    assert pairs[0][1:] == ("ann", "bob") and pairs[0][0] > 0.95  # renamed identifiers and comments do not hide a copy
    assert not any({"ann", "cat"} == {a, b} for _, a, b in pairs)
    assert re.search(r"ann \(0/\d+\)</th><th>bob \(0/\d+\)", page)  # side by side, with their scores
    assert "<script>" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page or "onerror" not in page
    assert page.count("<img ") >= 3 and all('alt="' in tag for tag in re.findall(r"<img [^>]*>", page))


def test_answers_equal_to_the_solution_are_not_flagged():
    from grading.tools.synthetic import solutions

    solution = solutions(NB)[CODE]
    pairs = dashboard.similar_pairs({"a": solution, "b": solution, "c": OTHER}, code=True, reference=solution)
    assert pairs == []


def test_a_class_sized_dashboard_is_quick():
    results = [result(f"s{i:03d}", OTHER.replace("out", f"v{i % 7}") if i % 3 else ORIGINAL, float(i % 5)) for i in range(120)]
    start = time.perf_counter()
    page = dashboard.render(results)
    assert time.perf_counter() - start < 60
    assert "similar pair(s)" in page


def test_figures_are_titled_labelled_and_colour_blind_safe(monkeypatch):
    import matplotlib.colors as mcolors

    figures = []
    monkeypatch.setattr(dashboard, "_png", lambda fig: figures.append(fig) or "")
    dashboard._histogram("Scores", [1, 2, 3], 4, "score")
    dashboard._question_figure("Per question", ["q1", "q2"], [(1, 2, 3, 4, 0), (4, 3, 2, 1, 1)])
    okabe_ito = {dashboard.BLUE, dashboard.ORANGE, dashboard.PURPLE, dashboard.GREY, dashboard.SKY}
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        for patch in ax.patches:
            assert mcolors.to_hex(patch.get_facecolor()).upper() in {c.upper() for c in okabe_ito}
    hatches = {p.get_hatch() for p in figures[1].axes[0].patches}
    assert len(hatches) == 5  # every category also differs by pattern, not only by colour


def test_long_colluding_answers_cannot_stall_the_similarity_view():
    """Two answers of 1,500 repetitive lines: difflib alone took minutes on such pairs."""
    import time

    a = "def f(a, b):\n" + "    a = b\n" * 1500
    b = "def f(a, b):\n" + "    a + b\n" * 1500
    t0 = time.perf_counter()
    pairs = dashboard.similar_pairs({"x": a, "y": b, "z": a}, code=True)
    assert time.perf_counter() - t0 < 5
    assert pairs and pairs[0][1:] == ("x", "z")  # identical long answers are still found


def test_a_huge_answer_costs_seconds_and_a_bounded_page():
    """An outside attacker's answer cell: a cell magic, then 40 MB of one-character lines.  The tokenizer took
    3 minutes and 1.2 GB of the grader over it, after grading and outside every limit."""
    huge = "%%foo\n" + "+\n" * 4_000_000  # 8 MB here: enough to take the old code over a minute
    results = [result("attacker", huge + ORIGINAL, 1.0), result("copy", huge + RENAMED, 1.0), result("other", OTHER, 2.0)]
    start = time.perf_counter()
    page = dashboard.render(results)
    assert time.perf_counter() - start < 10
    assert "1 similar pair(s)" in page  # still compared (by their start) and still found alike
    assert len(page) < 200_000
