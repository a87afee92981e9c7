"""Notebook 1's checks pass the solution, catch typical wrong answers, accept correct alternatives."""

from __future__ import annotations

import textwrap

import pytest
from harness import answer_source, check_verdict, load, run_notebook

NB = "solutions/01_scoring_functions/scoring_functions.ipynb"


@pytest.fixture(scope="module")
def nb():
    return load(NB)


def code(src: str) -> str:
    return textwrap.dedent(src).strip() + "\n"


def test_solution_passes_every_check(nb):
    run = run_notebook(nb)
    assert run.checks and not run.failed, run.checks
    assert not run.cell_errors


def test_blank_answers_fail_every_check(nb):
    stub = "raise NotImplementedError()\n"
    answers = ["masked_softmax", "batch_scores", "bmm_vs_matmul", "DotProductAttention", "AdditiveAttention"]
    run = run_notebook(nb, {a: stub for a in answers})
    assert run.passed == set(), run.checks


MASKED_SOFTMAX_HEAD = "def masked_softmax(X, valid_lens):\n"
WRONG_MASKED_SOFTMAX = {
    "no masking": "    return torch.softmax(X, dim=-1)\n",
    "no masking, and valid_lens overwritten to cover every key": """
        if valid_lens is not None:
            valid_lens.fill_(X.shape[-1])
        return torch.softmax(X, dim=-1)
    """,
    "book style, in place with -1e6": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        shape = X.shape
        lens = valid_lens.to(X.device)
        lens = torch.repeat_interleave(lens, shape[1]) if lens.dim() == 1 else lens.reshape(-1)
        flat = X.reshape(-1, shape[-1])
        mask = torch.arange(shape[-1], device=X.device)[None, :] < lens[:, None]
        flat[~mask] = -1e6
        return torch.softmax(flat.reshape(shape), dim=-1)
    """,
    "fixed -1e6 fill: -inf in float16, NaN for a valid length of 0": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        lens = valid_lens.to(X.device)
        lens = lens[:, None] if lens.dim() == 1 else lens
        keep = torch.arange(X.shape[-1], device=X.device) < lens[..., None]
        return torch.softmax(X.masked_fill(~keep, -1e6), dim=-1)
    """,
    "only 1-D valid lengths": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        keep = torch.arange(X.shape[-1], device=X.device) < valid_lens.to(X.device)[:, None, None]
        return torch.softmax(X.masked_fill(~keep, torch.finfo(X.dtype).min), dim=-1).masked_fill(~keep, 0)
    """,
    "d2l's masked_softmax, called as is (in place, -1e6)": """
        from d2l import torch as d2l_book
        return d2l_book.masked_softmax(X, valid_lens)
    """,
    "d2l's algorithm on a copy (-1e6 fill)": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        shape = X.shape
        lens = valid_lens.to(X.device)
        lens = torch.repeat_interleave(lens, shape[1]) if lens.dim() == 1 else lens.reshape(-1)
        flat = X.reshape(-1, shape[-1]).clone()
        mask = torch.arange(shape[-1], device=X.device)[None, :] < lens[:, None]
        flat[~mask] = -1e6
        return torch.softmax(flat.reshape(shape), dim=-1)
    """,
    "softmax over the queries axis": """
        if valid_lens is None:
            return torch.softmax(X, dim=1)
        lens = valid_lens.to(X.device)
        lens = lens[:, None] if lens.dim() == 1 else lens
        keep = torch.arange(X.shape[-1], device=X.device) < lens[..., None]
        return torch.softmax(X.masked_fill(~keep, torch.finfo(X.dtype).min), dim=1).masked_fill(~keep, 0)
    """,
    "1-D mask on the queries axis (the hint without the query axis)": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        keep = torch.arange(X.shape[-1], device=X.device) < valid_lens.to(X.device)[..., None]
        return torch.softmax(X.masked_fill(~keep, torch.finfo(X.dtype).min), dim=-1).masked_fill(~keep, 0)
    """,
    "masks the first keys instead of the last": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        lens = valid_lens.to(X.device)
        lens = lens[:, None] if lens.dim() == 1 else lens
        keep = torch.arange(X.shape[-1], device=X.device) >= X.shape[-1] - lens[..., None]
        return torch.softmax(X.masked_fill(~keep, torch.finfo(X.dtype).min), dim=-1).masked_fill(~keep, 0)
    """,
}
GOOD_MASKED_SOFTMAX = {
    "torch.where and uniform rows for length 0": """
        if valid_lens is None:
            return X.softmax(-1)
        lens = valid_lens.to(X.device)
        if lens.dim() == 1:
            lens = lens.unsqueeze(1).expand(X.shape[0], X.shape[1])
        keep = torch.arange(X.shape[-1], device=X.device).view(1, 1, -1) < lens.unsqueeze(-1)
        low = torch.full_like(X, torch.finfo(X.dtype).min)
        weights = torch.where(keep, X, low).softmax(-1)
        empty = ~keep.any(-1, keepdim=True)
        return torch.where(keep | empty, weights, torch.zeros_like(weights))
    """,
    "book algorithm on a copy": """
        if valid_lens is None:
            return torch.softmax(X, dim=-1)
        shape = X.shape
        lens = valid_lens.to(X.device)
        lens = torch.repeat_interleave(lens, shape[1]) if lens.dim() == 1 else lens.reshape(-1)
        flat = X.reshape(-1, shape[-1]).clone()
        mask = torch.arange(shape[-1], device=X.device)[None, :] < lens[:, None]
        flat[~mask] = torch.finfo(X.dtype).min
        out = torch.softmax(flat, dim=-1)
        out[~mask] = 0
        return out.reshape(shape)
    """,
}


@pytest.mark.parametrize("name", WRONG_MASKED_SOFTMAX)
def test_wrong_masked_softmax_loses_its_points(nb, name):
    run = run_notebook(nb, {"masked_softmax": MASKED_SOFTMAX_HEAD + textwrap.indent(code(WRONG_MASKED_SOFTMAX[name]), "    ")})
    assert "test_masked_softmax" in run.failed
    assert {"test_batch_scores", "test_bmm_vs_matmul"} <= run.passed


@pytest.mark.parametrize("name", GOOD_MASKED_SOFTMAX)
def test_alternative_masked_softmax_keeps_full_marks(nb, name):
    run = run_notebook(nb, {"masked_softmax": MASKED_SOFTMAX_HEAD + textwrap.indent(code(GOOD_MASKED_SOFTMAX[name]), "    ")})
    assert not run.failed, run.checks


WRONG_BATCH_SCORES = {
    "keys times queries": "return torch.bmm(keys, queries.transpose(1, 2))",
    "scaled by sqrt(d)": "return torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])",
    "element-wise product": "return (queries * keys).sum(-1, keepdim=True)",
    "all batches mixed": "return torch.einsum('bnd,cmd->bnm', queries, keys)",
}
GOOD_BATCH_SCORES = {
    "matmul": "return queries @ keys.transpose(-1, -2)",
    "einsum": "return torch.einsum('bnd,bmd->bnm', queries, keys)",
    "bmm with mT": "return torch.bmm(queries, keys.mT)",
}


def batch_scores(body: str) -> str:
    return f"def batch_scores(queries, keys):\n    {body}\n"


@pytest.mark.parametrize("name", WRONG_BATCH_SCORES)
def test_wrong_batch_scores_loses_its_points(nb, name):
    run = run_notebook(nb, {"batch_scores": batch_scores(WRONG_BATCH_SCORES[name])})
    assert "test_batch_scores" in run.failed
    assert "test_masked_softmax" in run.passed


@pytest.mark.parametrize("name", GOOD_BATCH_SCORES)
def test_alternative_batch_scores_keeps_full_marks(nb, name):
    assert not run_notebook(nb, {"batch_scores": batch_scores(GOOD_BATCH_SCORES[name])}).failed


@pytest.mark.parametrize(
    "answer",
    ["matmul_shape = (2, 3, 4)\nbmm_accepts_2d = False", "matmul_shape = (2, 3, 5)\nbmm_accepts_2d = True",
     "matmul_shape = [2, 3, 5]\nbmm_accepts_2d = False", "matmul_shape = (2, 5, 3)\nbmm_accepts_2d = 'no'"],
)
def test_wrong_bmm_quiz_loses_its_point(nb, answer):
    assert "test_bmm_vs_matmul" in run_notebook(nb, {"bmm_vs_matmul": answer}).failed


def test_bmm_quiz_accepts_computed_answers(nb):
    answer = "matmul_shape = tuple(torch.matmul(A, W).shape)\nbmm_accepts_2d = False"
    assert not run_notebook(nb, {"bmm_vs_matmul": answer}).failed


def dot_attention(forward: str, init: str = "self.dropout = nn.Dropout(dropout)") -> str:
    return code(f"""
class DotProductAttention(nn.Module):
    def __init__(self, dropout):
        super().__init__()
        {init}

    def forward(self, queries, keys, values, valid_lens=None):
{textwrap.indent(code(forward), " " * 8)}
""")


WRONG_DOT = {
    "no scale": """
        scores = torch.bmm(queries, keys.transpose(1, 2))
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
    """,
    "divides by d": """
        scores = torch.bmm(queries, keys.transpose(1, 2)) / queries.shape[-1]
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
    """,
    "stores weights after dropout": """
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        self.attention_weights = self.dropout(masked_softmax(scores, valid_lens))
        return torch.bmm(self.attention_weights, values)
    """,
    "ignores valid_lens": """
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        self.attention_weights = torch.softmax(scores, dim=-1)
        return torch.bmm(self.dropout(self.attention_weights), values)
    """,
    "dropout also in eval mode": """
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(nn.functional.dropout(self.attention_weights, 0.5, training=True), values)
    """,
}
GOOD_DOT = {
    "matmul and mT": """
        weights = masked_softmax(queries @ keys.mT / queries.shape[-1] ** 0.5, valid_lens)
        self.attention_weights = weights
        return self.dropout(weights) @ values
    """,
    "einsum": """
        scores = torch.einsum("bnd,bmd->bnm", queries, keys) * queries.shape[-1] ** -0.5
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.einsum("bnm,bmv->bnv", self.dropout(self.attention_weights), values)
    """,
}


@pytest.mark.parametrize("name", WRONG_DOT)
def test_wrong_dot_product_attention_loses_its_points(nb, name):
    run = run_notebook(nb, {"DotProductAttention": dot_attention(WRONG_DOT[name])})
    assert "test_DotProductAttention" in run.failed
    assert "test_AdditiveAttention" in run.passed


@pytest.mark.parametrize("name", GOOD_DOT)
def test_alternative_dot_product_attention_keeps_full_marks(nb, name):
    run = run_notebook(nb, {"DotProductAttention": dot_attention(GOOD_DOT[name])})
    assert not run.failed, run.checks


def additive(forward: str, bias: str = "False", act: str = "torch.tanh") -> str:
    return code(f"""
class AdditiveAttention(nn.Module):
    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.W_q = nn.LazyLinear(num_hiddens, bias={bias})
        self.W_k = nn.LazyLinear(num_hiddens, bias={bias})
        self.w_v = nn.LazyLinear(1, bias={bias})
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        act = {act}
{textwrap.indent(code(forward), " " * 8)}
""")


ADDITIVE_BODY = """
    features = act(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
    self.attention_weights = masked_softmax(self.w_v(features).squeeze(-1), valid_lens)
    return torch.bmm(self.dropout(self.attention_weights), values)
"""
WRONG_ADDITIVE = {
    "biases": additive(ADDITIVE_BODY, bias="True"),
    "relu instead of tanh": additive(ADDITIVE_BODY, act="torch.relu"),
    "no masking": additive(ADDITIVE_BODY.replace("masked_softmax(", "torch.softmax(").replace(", valid_lens)", ", dim=-1)")),
    "tanh applied after w_v": additive("""
        features = self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1)
        self.attention_weights = masked_softmax(act(self.w_v(features)).squeeze(-1), valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)
    """),
}
GOOD_ADDITIVE = {
    "book version": additive(ADDITIVE_BODY),
    "indexing and matmul": additive("""
        q, k = self.W_q(queries), self.W_k(keys)
        scores = self.w_v(act(q[:, :, None, :] + k[:, None, :, :]))[..., 0]
        self.attention_weights = masked_softmax(scores, valid_lens)
        return self.dropout(self.attention_weights) @ values
    """),
}


@pytest.mark.parametrize("name", WRONG_ADDITIVE)
def test_wrong_additive_attention_loses_its_points(nb, name):
    run = run_notebook(nb, {"AdditiveAttention": WRONG_ADDITIVE[name]})
    assert "test_AdditiveAttention" in run.failed
    assert "test_DotProductAttention" in run.passed


@pytest.mark.parametrize("name", GOOD_ADDITIVE)
def test_alternative_additive_attention_keeps_full_marks(nb, name):
    run = run_notebook(nb, {"AdditiveAttention": GOOD_ADDITIVE[name]})
    assert not run.failed, run.checks


def test_answer_cells_keep_their_names_in_the_student_version():
    student = load("notebooks/01_scoring_functions/scoring_functions.ipynb")
    for gid, name in [("masked_softmax", "def masked_softmax"), ("DotProductAttention", "class DotProductAttention"),
                      ("AdditiveAttention", "class AdditiveAttention"), ("batch_scores", "def batch_scores"),
                      ("bmm_vs_matmul", "matmul_shape")]:
        src = answer_source(student, gid)
        assert name in src and "NotImplementedError" in src


# --------------------------------------------------------------------------- every wrong answer, for the catch share

WRONG_ANSWERS = (
    [("masked_softmax", "test_masked_softmax", f"masked_softmax: {name}",
      {"masked_softmax": MASKED_SOFTMAX_HEAD + textwrap.indent(code(src), "    ")})
     for name, src in WRONG_MASKED_SOFTMAX.items()]
    + [("batch_scores", "test_batch_scores", f"batch_scores: {name}", {"batch_scores": batch_scores(src)})
       for name, src in WRONG_BATCH_SCORES.items()]
    + [("bmm_vs_matmul", "test_bmm_vs_matmul", "bmm quiz: " + answer.replace("\n", "; "), {"bmm_vs_matmul": answer})
       for answer in ["matmul_shape = (2, 3, 4)\nbmm_accepts_2d = False", "matmul_shape = (2, 3, 5)\nbmm_accepts_2d = True",
                      "matmul_shape = [2, 3, 5]\nbmm_accepts_2d = False", "matmul_shape = (2, 5, 3)\nbmm_accepts_2d = 'no'"]]
    + [("DotProductAttention", "test_DotProductAttention", f"DotProductAttention: {name}", {"DotProductAttention": dot_attention(src)})
       for name, src in WRONG_DOT.items()]
    + [("AdditiveAttention", "test_AdditiveAttention", f"AdditiveAttention: {name}", {"AdditiveAttention": src})
       for name, src in WRONG_ADDITIVE.items()]
)
#: wrong answers that only the hidden tests catch, and why a visible check does not
HIDDEN_ON_PURPOSE = {
    "bmm quiz: matmul_shape = (2, 3, 4); bmm_accepts_2d = False": "checking the value visibly would give the quiz's answer away",
    "bmm quiz: matmul_shape = (2, 3, 5); bmm_accepts_2d = True": "checking the value visibly would give the quiz's answer away",
}


@pytest.mark.parametrize(("answer", "check", "label", "replace"), WRONG_ANSWERS, ids=[w[2] for w in WRONG_ANSWERS])
def test_visible_messages_name_the_mistake(nb, answer, check, label, replace):
    """Messages in words: a typical mistake is named, the failing case too; no reference tensor is printed."""
    verdict = check_verdict(nb, replace, check, visible_only=True)
    if label in HIDDEN_ON_PURPOSE:
        assert verdict is None
        return
    assert verdict is not None and "tensor(" not in verdict
    expected_words = {
        "masked_softmax: fixed -1e6 fill: -inf in float16, NaN for a valid length of 0": "does not fit in float16",
        "masked_softmax: softmax over the queries axis": "softmax over the queries axis",
        "masked_softmax: d2l's algorithm on a copy (-1e6 fill)": "torch.finfo(X.dtype).min",
        "masked_softmax: d2l's masked_softmax, called as is (in place, -1e6)": "leave its input unchanged",
        "masked_softmax: 1-D mask on the queries axis (the hint without the query axis)": "(batch, 1, keys)",
        "masked_softmax: book style, in place with -1e6": "leave its input unchanged",
        "DotProductAttention: no scale": "1/sqrt(d) factor is missing",
        "DotProductAttention: divides by d": "divided by d, not by sqrt(d)",
        "DotProductAttention: stores weights after dropout": "store them before dropout",
        "AdditiveAttention: relu instead of tanh": "relu instead of tanh",
        "AdditiveAttention: tanh applied after w_v": "tanh applied after w_v",
    }
    if label in expected_words:
        assert expected_words[label] in verdict, verdict


def test_unanswered_questions_say_not_answered_yet():
    student = load("notebooks/01_scoring_functions/scoring_functions.ipynb")
    run = run_notebook(student)
    for check, verdict in run.checks.items():
        assert verdict is not None and "not answered yet" in verdict, (check, verdict)


def test_a_missing_attention_weights_attribute_is_named(nb):
    source = dot_attention("""
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(weights), values)
    """)
    verdict = check_verdict(nb, {"DotProductAttention": source}, "test_DotProductAttention", visible_only=True)
    assert "self.attention_weights" in verdict and "return" not in verdict


def test_hidden_value_failures_name_their_case(nb):
    wrong = MASKED_SOFTMAX_HEAD + "    return torch.softmax(X * 1.01, dim=-1) if valid_lens is None else " \
        + "masked_softmax_reference(X, valid_lens)\n"
    right = answer_source(nb, "masked_softmax").replace("def masked_softmax(", "def masked_softmax_reference(")
    verdict = check_verdict(nb, {"masked_softmax": right + "\n\n" + wrong}, "test_masked_softmax")
    assert verdict is not None and "valid_lens=None" in verdict, verdict
