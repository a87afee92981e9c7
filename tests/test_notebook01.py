"""Notebook 1's checks pass the solution, catch typical wrong answers, accept correct alternatives."""

from __future__ import annotations

import textwrap

import pytest

from harness import answer_source, load, run_notebook

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
