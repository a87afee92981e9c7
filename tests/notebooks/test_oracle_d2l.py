"""Our reference implementations agree with d2l's, an independent oracle, where d2l is correct.

d2l is correct for float32 inputs whose valid lengths are all positive; elsewhere
(float16, a valid length of 0, in-place writes) our notebook deliberately differs.
"""

from __future__ import annotations

import pytest
import torch
from d2l import torch as d2l
from harness import load, run_notebook


@pytest.fixture(scope="module")
def ours():
    run = run_notebook(load("solutions/01_scoring_functions/scoring_functions.ipynb"))
    assert not run.failed and not run.cell_errors
    return run.namespace


LENS = [None, torch.tensor([2, 6, 3]), torch.tensor([[1, 2, 3, 4], [6, 5, 1, 2], [3, 3, 3, 3]])]


@pytest.mark.parametrize("lens", LENS, ids=["none", "1d", "2d"])
def test_masked_softmax_matches_d2l(ours, lens):
    torch.manual_seed(0)
    X = torch.randn(3, 4, 6)
    expected = d2l.masked_softmax(X.clone(), lens)
    assert torch.allclose(ours["masked_softmax"](X, lens), expected, atol=1e-6)


def test_d2l_masked_softmax_modifies_its_input_and_ours_does_not(ours):
    """The claim the notebook makes about the book's version, checked."""
    X = torch.rand(2, 2, 4)
    before = X.clone()
    d2l.masked_softmax(X, torch.tensor([2, 3]))
    assert not torch.equal(X, before)
    X = before.clone()
    ours["masked_softmax"](X, torch.tensor([2, 3]))
    assert torch.equal(X, before)


@pytest.mark.parametrize("lens", LENS, ids=["none", "1d", "2d"])
def test_dot_product_attention_matches_d2l(ours, lens):
    torch.manual_seed(1)
    Q, K, V = torch.randn(3, 4, 8), torch.randn(3, 6, 8), torch.randn(3, 6, 5)
    mine = ours["DotProductAttention"](dropout=0.5).eval()
    book = d2l.DotProductAttention(dropout=0.5).eval()
    assert torch.allclose(mine(Q, K, V, lens), book(Q, K, V, lens), atol=1e-5)
    assert torch.allclose(mine.attention_weights, book.attention_weights, atol=1e-6)


@pytest.mark.parametrize("lens", LENS, ids=["none", "1d", "2d"])
def test_additive_attention_matches_d2l(ours, lens):
    torch.manual_seed(2)
    Q, K, V = torch.randn(3, 4, 20), torch.randn(3, 6, 2), torch.randn(3, 6, 5)
    mine = ours["AdditiveAttention"](num_hiddens=8, dropout=0.1).eval()
    book = d2l.AdditiveAttention(num_hiddens=8, dropout=0.1).eval()
    mine(Q, K, V, lens), book(Q, K, V, lens)  # materialise the lazy layers
    book.load_state_dict(mine.state_dict())  # same parameter names: W_q, W_k, w_v
    assert torch.allclose(mine(Q, K, V, lens), book(Q, K, V, lens), atol=1e-5)
    assert torch.allclose(mine.attention_weights, book.attention_weights, atol=1e-6)
