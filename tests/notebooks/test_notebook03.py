"""Notebook 3 (understanding attention): the solution passes, typical wrong answers fail, alternatives pass,
and the measured facts that the notebook's prose states stay true.

Every variant replaces one answer cell of the solution notebook and runs it in-process
(tests/harness.py) up to that answer's check; the check (visible + hidden tests) must fail for
a wrong answer and pass for a correct alternative.  The facts are measured in float32 on the CPU,
as in the notebook.
"""

from __future__ import annotations

import json
import math
import re
import textwrap

import pytest
import torch
from harness import answer_source, check_verdict, grade_id, load, points, run_notebook

import attnkit
from attnkit import KEY, VALUE, attention

SOLUTION = "solutions/03_understanding_attention/understanding_attention.ipynb"
RELEASE = "notebooks/03_understanding_attention/understanding_attention.ipynb"
ANSWERS = ["query121", "query122", "query131", "query132", "m_key_141", "m_key_142"]
WRITTEN = {"scale_tradeoff_answer": 1, "exact_selection_answer": 2}
POINTS = {
    "test_query121": 1,
    "test_query122": 1,
    "test_query131": 1,
    "test_query132": 2,
    "test_m_key_141": 2,
    "test_m_key_142": 2,
    **WRITTEN,
}
TOLERANCES = {"query121": "1e-3", "query122": "1e-3", "query131": "1e-3", "query132": "5e-3", "m_key_141": "5e-3"}


@pytest.fixture(scope="module")
def solution():
    return load(SOLUTION)


@pytest.fixture(scope="module")
def solution_run(solution):
    return run_notebook(solution)


def _check_after(solution, gid: str, source: str, extra: dict[str, str] | None = None):
    """Run the notebook with answer cell ``gid`` replaced, up to its check; return that check's verdict."""
    return check_verdict(solution, {gid: textwrap.dedent(source), **(extra or {})}, f"test_{gid}")


def _err(query, target, key=KEY):
    return float((attention(query, key, VALUE) - target).abs().max())


def _with_row2(row):
    m = KEY.clone()
    m[2] = row
    return m


Q132 = 8 * (KEY[0:1] + KEY[1:2]) / 2  # the reference query132
MEAN2 = VALUE[0:2].mean(0, keepdim=True)
MEAN3 = VALUE[0:3].mean(0, keepdim=True)


# --------------------------------------------------------------------------- the solution itself


def test_solution_passes_every_check(solution_run):
    assert set(solution_run.checks) == {f"test_{name}" for name in ANSWERS}
    assert solution_run.failed == set(), solution_run.checks
    assert solution_run.cell_errors == []


def test_solution_writes_nothing_to_stderr(solution, capfd):
    run = run_notebook(solution)
    assert run.failed == set()
    assert capfd.readouterr().err == ""


def test_fixed_matrices_are_the_helpers_ones_and_the_seed_curiosity_holds(solution_run):
    ns = solution_run.namespace
    assert torch.equal(ns["key"], KEY) and torch.equal(ns["value"], VALUE)
    # the notebook prints whether the seed-447 recipe reproduces them; on this torch it does
    assert torch.equal(ns["drawn_key"], KEY) and torch.equal(ns["drawn_value"], VALUE)


def test_reference_answers_and_their_errors(solution_run):
    """The errors that the solution's comments and the written answers quote."""
    ns = solution_run.namespace
    assert _err(ns["query121"], VALUE[0:1]) == 0.0
    assert _err(ns["query122"], VALUE) == 0.0
    assert 1.8e-4 <= _err(ns["query131"], VALUE.mean(0, keepdim=True)) <= 2.0e-4  # "1.9e-4"
    assert 2.1e-3 <= _err(ns["query132"], MEAN2) <= 2.25e-3  # "2.2e-3"
    assert 1.5e-3 <= _err(ns["query132"], MEAN3, ns["m_key_141"]) <= 1.65e-3  # "1.6e-3"
    assert 0.146 <= _err(ns["query132"], VALUE[2:3], ns["m_key_142"]) <= 0.148  # "0.147"


def test_exploration_and_static_fallback_ran(solution_run):
    ns = solution_run.namespace
    assert ns["attnkit"].explorer.use_widgets() is False  # NBGRADER_EXECUTION is set by the harness, as while grading
    errors = torch.tensor(ns["errors"])
    assert len(errors) == len(ns["factors"]) == 121
    best = int(errors.argmin())
    assert 0.8 <= float(ns["factors"][best]) <= 1.2  # the reference S = 8 is (close to) the best length
    assert errors[0] > 0.1 and errors[-1] > 0.2  # too short and too long both fail


# --------------------------------------------------------------------------- measured facts (float32)


def test_selection_facts():
    for S in (10, 12, 20):
        assert _err(S * KEY[0:1], VALUE[0:1]) < 1e-3 and _err(S * KEY, VALUE) < 1e-3
    for S in (30, 50, 100, 1e3, 1e4, 1e5):  # "exactly 0 from S = 30" (the issue: "from S = 100")
        assert _err(S * KEY[0:1], VALUE[0:1]) == 0.0 and _err(S * KEY, VALUE) == 0.0
    assert _err(KEY[0:1], VALUE[0:1]) == pytest.approx(0.26, abs=5e-3)  # S = 1
    assert _err(5 * KEY[0:1], VALUE[0:1]) > 1e-2
    assert torch.allclose(KEY.norm(dim=1), torch.ones(4), atol=1e-2)  # keys of (almost) unit length


def test_float16_overflow_fact():
    q = 1e5 * KEY[0:1] / KEY[0].norm()
    scores16 = q.half() @ KEY.half().T
    assert torch.isinf(scores16).any()
    assert torch.isnan(torch.softmax(scores16, dim=-1)).all()
    assert torch.softmax(q @ KEY.T, dim=-1)[0, 0] == 1.0  # float32 is fine
    assert 1e5 * 0.88 > torch.finfo(torch.float16).max  # query122 overflows already in the query itself


def test_a_1d_query_fails_inside_pytorch_but_check_query_explains():
    with pytest.raises(RuntimeError):
        attention(1e5 * KEY[0], KEY, VALUE)
    with pytest.raises(ValueError, match=r"2-D query of shape \(n_queries, 3\).*reshape\(1, 3\)"):
        attnkit.check_query(1e5 * KEY[0], VALUE[0])


def test_averaging_all_facts():
    target = VALUE.mean(0, keepdim=True)
    assert _err(torch.zeros(1, 3), target) == 0.0
    assert _err(1e-2 * KEY.mean(0, keepdim=True), target) == pytest.approx(1.9e-4, abs=1e-5)
    assert _err(KEY.mean(0, keepdim=True), target) > 1e-2


def test_averaging_two_facts():
    direction = (KEY[0:1] + KEY[1:2]) / 2
    grid = torch.linspace(4, 20, 161)
    errors = torch.tensor([_err(float(S) * direction, MEAN2) for S in grid])
    best = int(errors.argmin())
    assert 7 <= float(grid[best]) <= 9  # "smallest near S = 8"
    assert _err(8 * direction, MEAN2) == pytest.approx(2.2e-3, abs=1e-4)
    in_range = errors[(grid >= 6) & (grid <= 12)]
    assert float(in_range.max()) < 3.5e-3  # "under 3.5e-3 for S in [6, 12]"
    assert _err(1e5 * direction, MEAN2) == pytest.approx(0.27, abs=5e-3)  # selects v1
    assert _err(direction, MEAN2) == pytest.approx(0.19, abs=5e-3)  # S = 1
    # the written answer's scores and gap
    scores = (direction @ KEY.T)[0]
    assert torch.allclose(scores, torch.tensor([0.638, 0.640, -0.297, -0.237]), atol=1.5e-3)
    assert float(scores[1] - scores[0]) == pytest.approx(0.0022, abs=1e-4)
    # a query orthogonal to k1 - k0 reaches 0, as the written answer says
    d = KEY[0] - KEY[1]
    u = direction[0] - (direction[0] @ d) / (d @ d) * d
    assert _err(50 * u[None], MEAN2) == 0.0


def test_interaction_141_facts():
    assert _err(Q132, MEAN3, _with_row2((KEY[0] + KEY[1]) / 2)) == pytest.approx(1.6e-3, abs=5e-5)
    assert _err(Q132, MEAN3, _with_row2(KEY[0])) == pytest.approx(2.4e-3, abs=5e-5)
    assert _err(Q132, MEAN3, _with_row2(KEY[1])) == pytest.approx(7.8e-4, abs=5e-5)
    assert _err(Q132, MEAN3, KEY) > 0.1
    # "the best any row 2 can do is about 5.5e-4": a row found numerically reaches it, and a local
    # search around it (and from the simple rows) does not go lower
    best_row = torch.tensor([0.51291291, 0.60770019, 1.19229268])
    assert _err(Q132, MEAN3, _with_row2(best_row)) == pytest.approx(5.5e-4, abs=1e-5)
    scipy_optimize = pytest.importorskip("scipy.optimize")
    K64, V64, q64, t64 = KEY.double(), VALUE.double(), Q132.double(), MEAN3.double()

    def err64(r):
        m = K64.clone()
        m[2] = torch.tensor(r, dtype=torch.float64)
        return float((torch.softmax(q64 @ m.T, dim=-1) @ V64 - t64).abs().max())

    for start in (best_row, (KEY[0] + KEY[1]) / 2, KEY[1]):
        res = scipy_optimize.minimize(err64, start.double().numpy(), method="Nelder-Mead",
                                      options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
        assert res.fun >= 5.4e-4


def test_interaction_142_facts():
    direction = Q132[0] / Q132.norm()
    m = _with_row2(direction)
    weights = torch.softmax(Q132 @ m.T, dim=-1)[0]
    assert torch.allclose(weights, torch.tensor([0.177, 0.180, 0.643, 0.0002]), atol=1e-3)
    assert _err(Q132, VALUE[2:3], m) == pytest.approx(0.147, abs=1e-3)
    assert float(Q132.norm()) == pytest.approx(6.39, abs=5e-3)
    # no unit row does better than the one along the query (the error falls as the weight on key 2 grows)
    torch.manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(2000, 3), dim=1)
    best = _err(Q132, VALUE[2:3], m)
    assert min(_err(Q132, VALUE[2:3], _with_row2(r)) for r in rows) >= best - 1e-6
    # a weight of 0.999 on v2 needs a score of ~12.7, i.e. a key of length ~1.99 along the query
    others = torch.exp((Q132 @ KEY.T)[0, [0, 1, 3]]).sum()
    needed_score = math.log(0.999 / 0.001 * float(others))
    assert needed_score == pytest.approx(12.7, abs=0.05)
    assert needed_score / float(Q132.norm()) == pytest.approx(1.99, abs=0.01)
    assert float(torch.softmax(Q132 @ _with_row2(1.99 * direction).T, dim=-1)[0, 2]) >= 0.999


# --------------------------------------------------------------------------- wrong answers and alternatives

WRONG = {
    "query121": {
        "S=1": "query121 = key[0:1]",
        "S=5": "query121 = 5 * key[0:1]",
        "wrong key index": "query121 = 1e5 * key[1:2]",
        "built from value": "query121 = 1e5 * value[0:1]",
        "1-D query": "query121 = 1e5 * key[0]",
        "four queries": "query121 = 1e5 * key",
    },
    "query122": {
        "S=1": "query122 = key",
        "S=5": "query122 = 5 * key",
        "rows permuted": "query122 = 1e5 * key[[1, 0, 2, 3]]",
        "built from value": "query122 = 1e5 * value",
        "one query": "query122 = 1e5 * key[0:1]",
        "transposed": "query122 = 1e5 * key.T",
        "1-D": "query122 = (1e5 * key).flatten()",
    },
    "query131": {
        "S=1 mean key": "query131 = key.mean(0, keepdim=True)",
        "ones": "query131 = torch.ones(1, 3)",
        "selection": "query131 = 1e5 * key[0:1]",
        "built from value": "query131 = value.mean(0, keepdim=True)",
        "four queries": "query131 = torch.zeros(4, 3)",
        "1-D": "query131 = torch.zeros(3)",
        "integer tensor": "query131 = torch.tensor([[0, 0, 0]])",
    },
    "query132": {
        "S=1e5": "query132 = 1e5 * (key[0:1] + key[1:2]) / 2",
        "S=1": "query132 = (key[0:1] + key[1:2]) / 2",
        "S=50": "query132 = 50 * (key[0:1] + key[1:2]) / 2",
        "one key": "query132 = 8 * key[0:1]",
        "all keys": "query132 = 8 * key.mean(0, keepdim=True)",
        "built from value": "query132 = 8 * value[0:2].mean(0, keepdim=True)",
        "zero query": "query132 = torch.zeros(1, 3)",
        "1-D": "query132 = 8 * (key[0] + key[1]) / 2",
    },
    "m_key_141": {
        "unchanged key": "m_key_141 = key.clone()",
        "row 0 replaced": "m_key_141 = key.clone()\nm_key_141[0] = (key[0] + key[1]) / 2",
        "row 3 replaced too": "m_key_141 = key.clone()\nm_key_141[2] = (key[0] + key[1]) / 2\nm_key_141[3] = key[1]",
        "row 2 = query132": "m_key_141 = key.clone()\nm_key_141[2] = query132[0]",
        "row 2 = -key[2]": "m_key_141 = key.clone()\nm_key_141[2] = -key[2]",
        "row 2 from value": "m_key_141 = key.clone()\nm_key_141[2] = value[0:3].mean(0)",
        "key modified in place": "m_key_141 = key\nm_key_141[2] = (key[0] + key[1]) / 2",
        "NaN row": "m_key_141 = key.clone()\nm_key_141[2] = float('nan')",
        "wrong shape": "m_key_141 = key[0:3].clone()",
    },
    "m_key_142": {
        "unchanged key": "m_key_142 = key.clone()",
        "not unit length (1.99)": "m_key_142 = key.clone()\nm_key_142[2] = 1.99 * query132[0] / query132.norm()",
        "query132 unnormalised": "m_key_142 = key.clone()\nm_key_142[2] = query132[0]",
        "row 3 replaced": "m_key_142 = key.clone()\nm_key_142[3] = query132[0] / query132.norm()",
        "row 2 = v2 normalised": "m_key_142 = key.clone()\nm_key_142[2] = value[2] / value[2].norm()",
        "row 2 = -key[2]": "m_key_142 = key.clone()\nm_key_142[2] = -key[2] / key[2].norm()",
        "row 2 = key[0] (improves, not the best)": "m_key_142 = key.clone()\nm_key_142[2] = key[0] / key[0].norm()",
        "key modified in place": "m_key_142 = key\nm_key_142[2] = query132[0] / query132.norm()",
    },
}

RIGHT = {
    "query121": {
        "S=1e5": "query121 = 1e5 * key[0:1]",
        "S=10": "query121 = 10 * key[0:1]",
        "S=100": "query121 = 100 * key[0:1]",
        "unit direction": "query121 = 1e5 * key[0:1] / key[0].norm()",
        "float64": "query121 = 1e5 * key[0:1].double()",
        "typed in": "query121 = torch.tensor([[47.0, 65.0, 60.0]])",
        "reshape": "query121 = (30 * key[0]).reshape(1, 3)",
    },
    "query122": {
        "S=1e5": "query122 = 1e5 * key",
        "S=10": "query122 = 10 * key",
        "S=30": "query122 = 30 * key",
        "unit rows": "query122 = 100 * key / key.norm(dim=1, keepdim=True)",
    },
    "query131": {
        "zero": "query131 = torch.zeros(1, 3)",
        "S=1e-2 mean key": "query131 = 1e-2 * key.mean(0, keepdim=True)",
        "tiny ones": "query131 = 1e-3 * torch.ones(1, 3)",
        "tiny key": "query131 = 1e-4 * key[0:1]",
        "float64 zero": "query131 = torch.zeros(1, 3, dtype=torch.float64)",
    },
    "query132": {
        "S=8": "query132 = 8 * (key[0:1] + key[1:2]) / 2",
        "S=6": "query132 = 6 * (key[0:1] + key[1:2]) / 2",
        "S=12": "query132 = 12 * (key[0:1] + key[1:2]) / 2",
        "S=7.8": "query132 = 7.8 * key[0:2].mean(0, keepdim=True)",
        "orthogonal to k0 - k1": """
            d = key[0] - key[1]
            u = (key[0] + key[1]) / 2
            query132 = 50 * (u - (u @ d) / (d @ d) * d)[None]
        """,
    },
    "m_key_141": {
        "(k0 + k1) / 2": "m_key_141 = key.clone()\nm_key_141[2] = (key[0] + key[1]) / 2",
        "k0": "m_key_141 = key.clone()\nm_key_141[2] = key[0]",
        "k1": "m_key_141 = key.clone()\nm_key_141[2] = key[1]",
        "the best row": "m_key_141 = key.clone()\nm_key_141[2] = torch.tensor([0.5129, 0.6077, 1.1923])",
        "stacked": "m_key_141 = torch.stack([key[0], key[1], (key[0] + key[1]) / 2, key[3]])",
        "float64 copy": "m_key_141 = key.double()\nm_key_141[2] = key[1].double()",
    },
    "m_key_142": {
        "along query132": "m_key_142 = key.clone()\nm_key_142[2] = query132[0] / query132.norm()",
        "F.normalize": "m_key_142 = key.clone()\nm_key_142[2] = torch.nn.functional.normalize(query132, dim=-1)[0]",
        "along k0 + k1": "m_key_142 = key.clone()\nm_key_142[2] = (key[0] + key[1]) / (key[0] + key[1]).norm()",
        "rounded, then normalised": """
            m_key_142 = key.clone()
            row = (query132[0] / query132.norm()).round(decimals=2)
            m_key_142[2] = row / row.norm()
        """,
    },
}


def _cases(table):
    return [pytest.param(gid, src, id=f"{gid}-{label}") for gid, rows in table.items() for label, src in rows.items()]


def test_at_least_three_wrong_answers_per_question():
    assert set(WRONG) == set(RIGHT) == set(ANSWERS)
    assert all(len(rows) >= 3 for rows in WRONG.values())


@pytest.mark.parametrize(("gid", "source"), _cases(WRONG))
def test_wrong_answers_fail_their_check(solution, gid, source):
    error = _check_after(solution, gid, source)
    assert error is not None, f"{gid}: the check accepted a wrong answer"
    assert "tensor(" not in error  # messages describe, they never print the reference tensors


@pytest.mark.parametrize(("gid", "source"), _cases(RIGHT))
def test_correct_alternatives_pass_their_check(solution, gid, source):
    assert _check_after(solution, gid, source) is None


@pytest.mark.parametrize("gid", ["query121", "query131", "query132"])
def test_a_1d_query_gets_a_message_about_the_shape(solution, gid):
    error = _check_after(solution, gid, f"{gid} = torch.zeros(3)")
    assert "expected a 2-D tensor of shape (1, 3)" in error and ".reshape(1, 3)" in error


def test_integer_query_gets_a_message_about_the_dtype(solution):
    error = _check_after(solution, "query131", "query131 = torch.tensor([[0, 0, 0]])")
    assert "floating-point" in error


def test_aliased_key_is_explained(solution):
    error = _check_after(solution, "m_key_141", "m_key_141 = key\nm_key_141[2] = key[1]")
    assert "key.clone()" in error


def test_1_4_2_visible_check_catches_a_suboptimal_row(solution):
    """A row that improves on the unchanged key but is far from the best fails the visible check already,
    and the visible search over unit rows finds the best error to within a small fraction of the tolerance."""
    student = load(RELEASE)
    visible_only = answer_source(student, "test_m_key_142")
    wrong = "m_key_142 = key.clone()\nm_key_142[2] = key[0] / key[0].norm()"
    verdict = _check_after(solution, "m_key_142", wrong, extra={"test_m_key_142": visible_only})
    assert verdict is not None and "within 0.002 of the best" in verdict and "tensor(" not in verdict
    run = run_notebook(solution, stop_after="test_m_key_142")
    q = run.namespace["query132"].double()
    best_row = q[0] / q.norm()
    m = KEY.double().clone()
    m[2] = best_row
    exact_best = float((torch.softmax(q @ m.T, dim=-1) @ VALUE.double() - VALUE.double()[2]).abs().max())
    assert 0 <= run.namespace["best_tried"] - exact_best < 2e-4


def test_1_4_2_a_row_just_inside_the_tolerance_passes_both(solution):
    """Visible and hidden checks agree near the boundary: a row slightly off the best direction passes both."""
    source = """
        m_key_142 = key.clone()
        row = query132[0] / query132.norm() + torch.tensor([0.0, 0.0, 0.05])
        m_key_142[2] = row / row.norm()
    """
    assert _check_after(solution, "m_key_142", source) is None


@pytest.mark.parametrize("S", [6, 12])
def test_section_1_4_follows_the_students_query132(solution, S):
    """The 1.4 checks use the student's own query132: other accepted lengths keep every check passing."""
    run = run_notebook(solution, replace={"query132": f"query132 = {S} * (key[0:1] + key[1:2]) / 2"})
    assert run.failed == set(), run.checks


# --------------------------------------------------------------------------- notebook structure and release


def test_points_answer_cells_and_written_answers(solution):
    assert points(solution) == POINTS
    for name in ANSWERS:
        source = answer_source(solution, name)
        assert name in source and "### BEGIN SOLUTION" in source
        check = answer_source(solution, f"test_{name}")
        assert "### BEGIN HIDDEN TESTS" in check and "warnings.simplefilter(\"ignore\")" in check
    for cell in solution.cells:
        meta = cell.metadata.get("nbgrader", {})
        if grade_id(cell) in WRITTEN:
            assert cell.cell_type == "markdown" and meta["solution"] and meta["grade"]
        elif meta.get("grade"):
            assert meta["locked"] and grade_id(cell).startswith("test_")


def test_tolerances_in_the_todos_match_the_checks(solution):
    text = {grade_id(c): c.source for c in solution.cells if grade_id(c)}
    markdown = "\n".join(c.source for c in solution.cells if c.cell_type == "markdown")
    for name, tol in TOLERANCES.items():
        assert f"check_error(error, {tol}," in text[f"test_{name}"]
    assert markdown.count("at most $10^{-3}$") >= 3 and markdown.count("at most $5\\cdot 10^{-3}$") == 1
    assert "at most $5\\cdot10^{-3}$" in markdown  # 1.4.1
    assert "0.002 of the best error" in markdown and "_gap <= 2e-3" in text["test_m_key_142"]
    assert "abs(length - 1) <= 1e-3" in text["test_m_key_142"]


def test_hidden_helpers_are_private(solution):
    for name in ANSWERS:
        hidden = answer_source(solution, f"test_{name}").split("### BEGIN HIDDEN TESTS")[1]
        assigned = re.findall(r"^\s*(?:def\s+)?([A-Za-z_]\w*)\s*(?:=|\()", hidden, flags=re.M)
        names = {n for n in assigned if n not in {"with", "assert", "check_close", "warnings"}}
        assert all(n.startswith("_") for n in names), names


def test_setup_cell_matches_notebook_1(solution):
    first = load("solutions/01_scoring_functions/scoring_functions.ipynb")
    mine, theirs = answer_source(solution, "setup"), answer_source(first, "setup")
    head = theirs.split("import math")[0]
    assert mine.startswith(head)
    assert mine.rstrip().endswith("device = attnkit.setup(seed=0)")
    badge = solution.cells[0].source
    assert "notebooks/03_understanding_attention/understanding_attention.ipynb" in badge
    assert badge.split("/blob/")[0] == first.cells[0].source.split("/blob/")[0]


def test_notebook_json_is_clean():
    for path in (SOLUTION, RELEASE):
        nb = load(path)
        text = json.dumps(nb)
        assert not any(p in text for p in ("/tmp/", "/work/", "/root/", "/home/"))
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_student_version_keeps_names_and_hides_answers():
    student = load(RELEASE)
    text = json.dumps(student)
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    assert "1e5" not in answer_source(student, "query121")
    for name in ANSWERS:
        source = answer_source(student, name)
        assert name in source and "raise NotImplementedError()" in source
    for gid in WRITTEN:
        assert answer_source(student, gid).strip() == "YOUR ANSWER HERE"


def test_student_version_fails_every_check():
    run = run_notebook(load(RELEASE))
    assert run.passed == set(), run.checks
    assert set(run.checks) == {f"test_{name}" for name in ANSWERS}


# --------------------------------------------------------------------------- every wrong answer, for the catch share

WRONG_ANSWERS = [(gid, f"test_{gid}", f"{gid}: {label}", {gid: textwrap.dedent(src)})
                 for gid, rows in WRONG.items() for label, src in rows.items()]
HIDDEN_ON_PURPOSE: dict[str, str] = {}


def test_unanswered_questions_say_not_answered_yet():
    run = run_notebook(load(RELEASE))
    for check, verdict in run.checks.items():
        assert verdict is not None and "not answered yet" in verdict, (check, verdict)


def test_a_key_with_the_wrong_row_replaced_is_described_as_such(solution):
    verdict = _check_after(solution, "m_key_141", "m_key_141 = key.clone()\nm_key_141[3] = (key[0] + key[1]) / 2")
    assert "row 2 unchanged and row(s) [3] changed instead" in verdict
    verdict = _check_after(solution, "m_key_141", WRONG["m_key_141"]["row 3 replaced too"])
    assert "only row 2 to differ from key, got row(s) [3] changed too" in verdict


@pytest.mark.parametrize("query", ["torch.zeros(3, 4)", "torch.zeros(3)", "[[1.0, 0.0, 0.0]]"])
def test_show_steps_explains_a_query_of_the_wrong_shape(solution_run, query):
    show_steps = solution_run.namespace["show_steps"]
    with pytest.raises(ValueError, match=r"expected a 2-D query of shape \(n, 3\)"):
        show_steps(eval(query, {"torch": torch}))  # noqa: S307 - a fixed test input
