"""Notebook 2 (scoring-function exercises): the solution passes, typical wrong answers fail, alternatives pass.

Every variant replaces one answer cell of the solution notebook and runs it in-process
(tests/harness.py); the check of that TODO (visible + hidden tests) must fail for a wrong
answer and pass for a correct alternative.
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest
from harness import answer_source, check_verdict, load, points, run_notebook

SOLUTION = "solutions/02_scoring_exercises/scoring_exercises.ipynb"
RELEASE = "notebooks/02_scoring_exercises/scoring_exercises.ipynb"
ANSWERS = ["DistanceAttention", "DiffDimDotProductAttention", "attention_flops", "attention_memory_traffic"]
POINTS = {
    "test_DistanceAttention": 3,
    "test_DiffDimDotProductAttention": 3,
    "test_attention_flops": 2,
    "test_attention_memory_traffic": 2,
    "cost_answer": 2,
}


@pytest.fixture(scope="module")
def solution():
    return load(SOLUTION)


@pytest.fixture(scope="module")
def solution_run(solution):
    return run_notebook(solution)


def _check_after(solution, gid: str, source: str):
    """Run the notebook with the answer cell ``gid`` replaced, up to its check; return that check's verdict."""
    return check_verdict(solution, {gid: textwrap.dedent(source)}, f"test_{gid}")


# --------------------------------------------------------------------------- the solution itself


def test_solution_passes_every_check(solution_run):
    assert set(solution_run.checks) == {f"test_{name}" for name in ANSWERS}
    assert solution_run.failed == set(), solution_run.checks
    assert solution_run.cell_errors == []


def test_solution_writes_nothing_to_stderr(solution, capfd):
    run = run_notebook(solution, stop_after="test_attention_memory_traffic")
    assert run.failed == set()
    assert capfd.readouterr().err == ""


def test_measurement_section_runs_quickly_and_records_slopes(solution_run):
    ns = solution_run.namespace
    assert ns["QUICK"] is True  # the harness sets NBGRADER_EXECUTION, as autograding does
    slopes = ns["measured_slopes"]
    assert set(slopes) == {"time vs n", "time vs d", "peak memory vs n, unfused", "peak memory vs n, fused"}
    assert all(math.isfinite(float(s)) for s in slopes.values())
    if ns["device"].type == "cpu":  # the tensor tracker is exact: n^2 for the unfused version, n for the fused one
        assert 1.5 < slopes["peak memory vs n, unfused"] < 2.1  # tiny sizes: the n*v output still counts
        assert 0.9 < slopes["peak memory vs n, fused"] < 1.1


def test_live_tensor_bytes_counts_allocations_and_frees(solution_run):
    import torch

    tracker_cls = solution_run.namespace["LiveTensorBytes"]
    with tracker_cls() as tracker:
        a = torch.empty(1000)  # 4000 bytes
        b = a + 1  # another 4000
        del a, b
        c = torch.zeros(500)  # 2000, after the frees
    assert tracker.peak == 8000
    assert tracker.current == 2000
    del c


# --------------------------------------------------------------------------- DistanceAttention

DISTANCE = """
class DistanceAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
{body}
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
"""


def _distance(body: str) -> str:
    return DISTANCE.format(body=textwrap.indent(textwrap.dedent(body).strip(), " " * 8))


DISTANCE_WRONG = {
    "sign error on the norm term": """
        dots = torch.bmm(queries, keys.transpose(1, 2))
        scores = (dots + 0.5 * (keys ** 2).sum(-1)[:, None, :]) / math.sqrt(d)
    """,
    "no norm term (plain dot product)": """
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
    """,
    "query norms instead of key norms": """
        dots = torch.bmm(queries, keys.transpose(1, 2))
        scores = (dots - 0.5 * (queries ** 2).sum(-1)[:, :, None]) / math.sqrt(d)
    """,
    "missing factor 1/2": """
        dots = torch.bmm(queries, keys.transpose(1, 2))
        scores = (2 * dots - (keys ** 2).sum(-1)[:, None, :]) / math.sqrt(d)
    """,
    "scaled by d instead of sqrt(d)": """
        dots = torch.bmm(queries, keys.transpose(1, 2))
        scores = (dots - 0.5 * (keys ** 2).sum(-1)[:, None, :]) / d
    """,
    "brute force (batch, n, m, d) differences": """
        diffs = queries[:, :, None, :] - keys[:, None, :, :]
        scores = -(diffs ** 2).sum(-1) / (2 * math.sqrt(d))
    """,
    "brute force, one example at a time": """
        scores = torch.stack([-((q[:, None, :] - k[None, :, :]) ** 2).sum(-1) for q, k in zip(queries, keys)])
        scores = scores / (2 * math.sqrt(d))
    """,
    "brute force with broadcasting inside vector_norm": """
        scores = -torch.linalg.vector_norm(queries.unsqueeze(2) - keys.unsqueeze(1), dim=-1) ** 2 / (2 * math.sqrt(d))
    """,
}

DISTANCE_RIGHT = {
    "torch.cdist": """
        scores = -torch.cdist(queries, keys) ** 2 / (2 * math.sqrt(d))
    """,
    "torch.cdist without matmul": """
        dist = torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist")
        scores = -dist ** 2 / (2 * math.sqrt(d))
    """,
    "einsum": """
        dots = torch.einsum("bnd,bmd->bnm", queries, keys)
        norms = torch.einsum("bmd,bmd->bm", keys, keys)
        scores = (dots - 0.5 * norms.unsqueeze(1)) / math.sqrt(d)
    """,
    "full expansion with the query norms": """
        dots = torch.bmm(queries, keys.transpose(1, 2))
        q_norms = (queries ** 2).sum(-1, keepdim=True)
        k_norms = (keys ** 2).sum(-1).unsqueeze(1)
        scores = -(q_norms - 2 * dots + k_norms) / (2 * math.sqrt(d))
    """,
    "matmul and vector_norm": """
        k_norms = torch.linalg.vector_norm(keys, dim=-1) ** 2
        scores = (queries @ keys.transpose(-2, -1)) / math.sqrt(d) - k_norms[:, None, :] / (2 * math.sqrt(d))
    """,
}


@pytest.mark.parametrize("body", DISTANCE_WRONG.values(), ids=DISTANCE_WRONG.keys())
def test_distance_attention_wrong_answers_fail(solution, body):
    assert _check_after(solution, "DistanceAttention", _distance(body)) is not None


def test_distance_attention_weights_after_dropout_fail(solution):
    source = _distance("""
        dots = torch.bmm(queries, keys.transpose(1, 2))
        scores = (dots - 0.5 * (keys ** 2).sum(-1)[:, None, :]) / math.sqrt(d)
    """).replace(
        "self.attention_weights = masked_softmax(scores, valid_lens)\n"
        "        return torch.bmm(self.dropout(self.attention_weights), values)",
        "self.attention_weights = self.dropout(masked_softmax(scores, valid_lens))\n"
        "        return torch.bmm(self.attention_weights, values)",
    )
    assert "self.dropout(masked_softmax" in source
    assert _check_after(solution, "DistanceAttention", source) is not None


def test_distance_attention_brute_force_is_caught_by_the_size_check(solution):
    verdict = _check_after(solution, "DistanceAttention", _distance(DISTANCE_WRONG["brute force (batch, n, m, d) differences"]))
    assert verdict is not None and "(query, key, dimension)" in verdict


@pytest.mark.parametrize("wrong", ["sign error on the norm term", "no norm term (plain dot product)",
                                   "query norms instead of key norms"])
def test_distance_attention_hidden_tests_alone_catch_norm_errors(solution, wrong):
    """The visible nearest-key check catches these too; the hidden comparison must not rely on it."""
    run = run_notebook(solution, stop_after="DistanceAttention")
    source = answer_source(solution, "test_DistanceAttention")
    hidden = source[source.index("### BEGIN HIDDEN TESTS"):]
    exec(_distance(DISTANCE_WRONG[wrong]), run.namespace)  # noqa: S102
    with pytest.raises(AssertionError, match="DistanceAttention output"):
        exec(hidden, run.namespace)  # noqa: S102


@pytest.mark.parametrize("body", DISTANCE_RIGHT.values(), ids=DISTANCE_RIGHT.keys())
def test_distance_attention_alternatives_pass(solution, body):
    assert _check_after(solution, "DistanceAttention", _distance(body)) is None


# --------------------------------------------------------------------------- DiffDimDotProductAttention

DIFFDIM = """
class DiffDimDotProductAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = {layer}
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
{body}
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
"""
STANDARD_BODY = """
    projected = self.W_q(queries)
    scores = torch.bmm(projected, keys.transpose(1, 2)) / math.sqrt(projected.shape[-1])
"""


def _diffdim(body: str = STANDARD_BODY, layer: str = "nn.LazyLinear(num_hiddens, bias=False)") -> str:
    return DIFFDIM.format(layer=layer, body=textwrap.indent(textwrap.dedent(body).strip(), " " * 8))


DIFFDIM_WRONG = {
    "bias in W_q": _diffdim(layer="nn.LazyLinear(num_hiddens)"),
    "scale by the query length": _diffdim("""
        scores = torch.bmm(self.W_q(queries), keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
    """),
    "no scale": _diffdim("""
        scores = torch.bmm(self.W_q(queries), keys.transpose(1, 2))
    """),
    "scale by h instead of sqrt(h)": _diffdim("""
        scores = torch.bmm(self.W_q(queries), keys.transpose(1, 2)) / keys.shape[-1]
    """),
    "no projection": _diffdim("""
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(keys.shape[-1])
    """),
    "projection applied to the keys": _diffdim("""
        scores = torch.bmm(queries, self.W_q(keys).transpose(1, 2)) / math.sqrt(keys.shape[-1])
    """),
    "weights stored after dropout": _diffdim().replace(
        "self.attention_weights = masked_softmax(scores, valid_lens)\n"
        "        return torch.bmm(self.dropout(self.attention_weights), values)",
        "self.attention_weights = self.dropout(masked_softmax(scores, valid_lens))\n"
        "        return torch.bmm(self.attention_weights, values)",
    ),
}

DIFFDIM_RIGHT = {
    "LazyLinear and bmm": _diffdim(),
    "einsum, scale from the keys": _diffdim("""
        projected = self.W_q(queries)
        scores = torch.einsum("bnh,bmh->bnm", projected, keys) / math.sqrt(keys.shape[-1])
    """),
    "matmul and a power for the scale": _diffdim("""
        projected = self.W_q(queries)
        scores = projected @ keys.transpose(-2, -1) * projected.shape[-1] ** -0.5
    """),
    "nn.Linear created on the first call": """
class DiffDimDotProductAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.W_q = None
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        if self.W_q is None:
            self.W_q = nn.Linear(queries.shape[-1], self.num_hiddens, bias=False).to(queries.device)
        projected = self.W_q(queries)
        scores = torch.bmm(projected, keys.transpose(1, 2)) / math.sqrt(self.num_hiddens)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
""",
}


def test_diffdim_weights_after_dropout_variant_is_built():
    assert "self.dropout(masked_softmax" in DIFFDIM_WRONG["weights stored after dropout"]


@pytest.mark.parametrize("source", DIFFDIM_WRONG.values(), ids=DIFFDIM_WRONG.keys())
def test_diffdim_wrong_answers_fail(solution, source):
    assert _check_after(solution, "DiffDimDotProductAttention", source) is not None


@pytest.mark.parametrize("source", DIFFDIM_RIGHT.values(), ids=DIFFDIM_RIGHT.keys())
def test_diffdim_alternatives_pass(solution, source):
    assert _check_after(solution, "DiffDimDotProductAttention", source) is None


# --------------------------------------------------------------------------- cost functions

FLOPS_WRONG = {
    "MACs instead of FLOPs": "n * m * (d + v)",
    "forgot the values": "2 * n * m * d",
    "counted softmax": "2 * n * m * (d + v) + 5 * n * m",
    "n instead of m": "2 * n * n * (d + v)",
    "assumed v == d": "4 * n * m * d",
}
FLOPS_RIGHT = {
    "factored": "2 * n * m * (d + v)",
    "float": "2.0 * n * m * (d + v)",
    "two products": "sum(2 * n * k * m for k in (d, v))",
}
TRAFFIC_WRONG = {
    "forgot the factor 4": "((n + m) * (d + v) + n * m) * bytes_per_element",
    "S and P counted twice, not four times": "((n + m) * (d + v) + 2 * n * m) * bytes_per_element",
    "forgot the bytes": "(n + m) * (d + v) + 4 * n * m",
    "fused (no n x m matrix)": "(n + m) * (d + v) * bytes_per_element",
    "only the n x m matrices": "4 * n * m * bytes_per_element",
    "inputs only, no output": "(n * d + m * d + m * v + 4 * n * m) * bytes_per_element",
}
TRAFFIC_RIGHT = {
    "factored": "((n + m) * (d + v) + 4 * n * m) * bytes_per_element",
    "term by term": "bytes_per_element * (n * d + m * d + n * m + n * m + n * m + n * m + m * v + n * v)",
    "float": "float(((n + m) * (d + v) + 4 * n * m) * bytes_per_element)",
}


def _flops(expr: str) -> str:
    return f"def attention_flops(n, m, d, v):\n    return {expr}\n"


def _traffic(expr: str, default: int = 4) -> str:
    return f"def attention_memory_traffic(n, m, d, v, bytes_per_element={default}):\n    return {expr}\n"


@pytest.mark.parametrize("expr", FLOPS_WRONG.values(), ids=FLOPS_WRONG.keys())
def test_flops_wrong_answers_fail(solution, expr):
    assert _check_after(solution, "attention_flops", _flops(expr)) is not None


@pytest.mark.parametrize("expr", FLOPS_RIGHT.values(), ids=FLOPS_RIGHT.keys())
def test_flops_alternatives_pass(solution, expr):
    assert _check_after(solution, "attention_flops", _flops(expr)) is None


@pytest.mark.parametrize("expr", TRAFFIC_WRONG.values(), ids=TRAFFIC_WRONG.keys())
def test_traffic_wrong_answers_fail(solution, expr):
    assert _check_after(solution, "attention_memory_traffic", _traffic(expr)) is not None


def test_traffic_wrong_default_fails(solution):
    source = _traffic(TRAFFIC_RIGHT["factored"], default=2)
    assert _check_after(solution, "attention_memory_traffic", source) is not None


@pytest.mark.parametrize("expr", TRAFFIC_RIGHT.values(), ids=TRAFFIC_RIGHT.keys())
def test_traffic_alternatives_pass(solution, expr):
    assert _check_after(solution, "attention_memory_traffic", _traffic(expr)) is None


# --------------------------------------------------------------------------- notebook structure and release


def test_points_and_answer_cells(solution):
    assert points(solution) == POINTS
    for name in ANSWERS:
        source = answer_source(solution, name)
        assert name in source and "### BEGIN SOLUTION" in source
        assert "### BEGIN HIDDEN TESTS" in answer_source(solution, f"test_{name}")


def test_student_version_keeps_names_and_hides_answers():
    student = load(RELEASE)
    text = json.dumps(student)
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
    for name in ANSWERS:
        source = answer_source(student, name)
        assert name in source and "raise NotImplementedError()" in source
    assert "YOUR ANSWER HERE" in answer_source(student, "cost_answer")


def test_student_version_fails_every_check_but_still_measures():
    run = run_notebook(load(RELEASE))
    assert run.passed == set(), run.checks
    assert set(run.checks) == {f"test_{name}" for name in ANSWERS}
    assert len(run.namespace["measured_slopes"]) == 4  # the measurement uses the given DotProductAttention


# --------------------------------------------------------------------------- every wrong answer, for the catch share

_AFTER_DROPOUT = _distance("""
    dots = torch.bmm(queries, keys.transpose(1, 2))
    scores = (dots - 0.5 * (keys ** 2).sum(-1)[:, None, :]) / math.sqrt(d)
""").replace(
    "self.attention_weights = masked_softmax(scores, valid_lens)\n"
    "        return torch.bmm(self.dropout(self.attention_weights), values)",
    "self.attention_weights = self.dropout(masked_softmax(scores, valid_lens))\n"
    "        return torch.bmm(self.attention_weights, values)",
)
WRONG_ANSWERS = (
    [("DistanceAttention", "test_DistanceAttention", f"DistanceAttention: {name}", {"DistanceAttention": _distance(body)})
     for name, body in DISTANCE_WRONG.items()]
    + [("DistanceAttention", "test_DistanceAttention", "DistanceAttention: weights stored after dropout",
        {"DistanceAttention": _AFTER_DROPOUT})]
    + [("DiffDimDotProductAttention", "test_DiffDimDotProductAttention", f"DiffDim: {name}",
        {"DiffDimDotProductAttention": source}) for name, source in DIFFDIM_WRONG.items()]
    + [("attention_flops", "test_attention_flops", f"flops: {name}", {"attention_flops": _flops(expr)})
       for name, expr in FLOPS_WRONG.items()]
    + [("attention_memory_traffic", "test_attention_memory_traffic", f"traffic: {name}",
        {"attention_memory_traffic": _traffic(expr)}) for name, expr in TRAFFIC_WRONG.items()]
    + [("attention_memory_traffic", "test_attention_memory_traffic", "traffic: default of 2 bytes",
        {"attention_memory_traffic": _traffic(TRAFFIC_RIGHT["factored"], default=2)})]
)
HIDDEN_ON_PURPOSE: dict[str, str] = {}
NAMED_MISTAKES = {
    "DistanceAttention: missing factor 1/2": "factor 1/2 of the norm term, or the 1/sqrt(d) scale, is missing",
    "DistanceAttention: scaled by d instead of sqrt(d)": "divided by d, not by sqrt(d)",
    "DistanceAttention: brute force (batch, n, m, d) differences": "(query, key, dimension)",
    "DistanceAttention: weights stored after dropout": "store them before dropout",
    "DiffDim: scale by the query length": "query length q, not the projected length h",
    "DiffDim: no scale": "1/sqrt(h) factor is missing",
    "DiffDim: weights stored after dropout": "store them before dropout",
    "flops: MACs instead of FLOPs": "MACs instead of FLOPs",
}


@pytest.mark.parametrize(("answer", "check", "label", "replace"), WRONG_ANSWERS, ids=[w[2] for w in WRONG_ANSWERS])
def test_visible_messages_name_the_mistake(solution, answer, check, label, replace):
    from harness import check_verdict

    verdict = check_verdict(solution, replace, check, visible_only=True)
    assert verdict is not None and "tensor(" not in verdict, verdict
    if label in NAMED_MISTAKES:
        assert NAMED_MISTAKES[label] in verdict, verdict


def test_unanswered_questions_say_not_answered_yet():
    run = run_notebook(load(RELEASE), stop_after="test_attention_memory_traffic")
    for check, verdict in run.checks.items():
        assert verdict is not None and "not answered yet" in verdict, (check, verdict)
