"""Unit tests of the attnkit helpers: checks, heatmaps, check_query, setup."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import attnkit
from attnkit import checks


def devices() -> list[str]:
    """Every device this machine has: the GPU path runs wherever a GPU exists."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    return found


# --------------------------------------------------------------------------- checks
def test_check_shape_explains_transposed_axes():
    with pytest.raises(AssertionError, match=r"expected shape \(2, 3\), got \(3, 2\).*transposed"):
        attnkit.check_shape(torch.zeros(3, 2), (2, 3))


def test_check_shape_explains_missing_axis_and_none():
    with pytest.raises(AssertionError, match=r"2 axes instead of 3"):
        attnkit.check_shape(torch.zeros(2, 3), (2, 1, 3))
    with pytest.raises(AssertionError, match="got None.*return"):
        attnkit.check_shape(None, (2, 3))
    with pytest.raises(AssertionError, match="got a list"):
        attnkit.check_shape([1, 2], (2,))
    attnkit.check_shape(torch.zeros(2, 3), (2, 3))


def test_rows_sum_to_one_accepts_zero_rows_and_rejects_bad_rows():
    good = torch.tensor([[0.25, 0.75], [0.0, 0.0]])
    attnkit.check_rows_sum_to_one(good)
    with pytest.raises(AssertionError, match="expected every row to sum to 1, got 1 row"):
        attnkit.check_rows_sum_to_one(torch.tensor([[0.5, 0.4], [1.0, 0.0]]))
    with pytest.raises(AssertionError, match="non-negative"):
        attnkit.check_rows_sum_to_one(torch.tensor([[1.5, -0.5]]))
    with pytest.raises(AssertionError, match="NaN"):
        attnkit.check_rows_sum_to_one(torch.tensor([[float("nan"), 1.0]]))


@pytest.mark.parametrize("lens", [torch.tensor([1, 3]), torch.tensor([[1, 2], [3, 0]])])
def test_check_masked_zero(lens):
    mask = checks.valid_mask((2, 2, 3), lens)
    weights = mask.float()
    attnkit.check_masked_zero(weights, lens)
    leaky = weights + 0.01
    with pytest.raises(AssertionError, match="expected exactly 0 beyond each valid length"):
        attnkit.check_masked_zero(leaky, lens)


def test_valid_mask_one_and_two_dimensional():
    assert checks.valid_mask((2, 2, 3), torch.tensor([1, 3])).tolist() == [
        [[True, False, False], [True, False, False]],
        [[True, True, True], [True, True, True]],
    ]
    assert checks.valid_mask((1, 2, 2), torch.tensor([[0, 2]])).tolist() == [[[False, False], [True, True]]]
    assert bool(checks.valid_mask((1, 1, 2), None).all())


def test_check_unchanged_detects_in_place_edits():
    x = torch.rand(2, 3)
    kept = attnkit.snapshot(x)
    attnkit.check_unchanged(kept, [x], "X")
    x[0, 0] = -1e6
    with pytest.raises(AssertionError, match="X: expected the function to leave its input unchanged"):
        attnkit.check_unchanged(kept, [x], "X")


def test_check_close_never_reveals_the_expected_values():
    expected = torch.tensor([0.123456, 0.654321])
    with pytest.raises(AssertionError) as err:
        attnkit.check_close(torch.zeros(2), expected, "answer")
    message = str(err.value)
    assert "0.123" not in message and "0.654" not in message
    assert "expected values within" in message and "got 2 of 2 entries off, the largest by about 1e-1" in message
    attnkit.check_close(expected.double() + 1e-7, expected, "answer")


def test_check_device_dtype():
    x = torch.zeros(2, dtype=torch.float64)
    attnkit.check_device_dtype(torch.ones(2, dtype=torch.float64), x)
    with pytest.raises(AssertionError, match="expected dtype torch.float64, got torch.float32"):
        attnkit.check_device_dtype(torch.ones(2), x)


@pytest.mark.parametrize("device", devices())
def test_checks_accept_tensors_on_any_device(device):
    w = torch.full((2, 1, 4), 0.25, device=device, requires_grad=True)
    attnkit.check_rows_sum_to_one(w)
    attnkit.check_masked_zero(w * (torch.arange(4, device=device) < 4), torch.tensor([4, 4], device=device))
    attnkit.check_close(w, torch.full((2, 1, 4), 0.25))


# --------------------------------------------------------------------------- heatmaps
@pytest.mark.parametrize(
    "shape, grid",
    [((2, 10), (1, 1)), ((3, 2, 10), (1, 3)), ((2, 3, 2, 10), (2, 3))],
)
def test_show_heatmaps_accepts_2d_3d_4d(shape, grid):
    data = torch.rand(shape)
    fig = attnkit.show_heatmaps(data, suptitle="weights")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == grid[0] * grid[1]
    assert len(fig.axes) == len(panels) + 1, "expected exactly one colour bar"
    limits = {ax.images[0].get_clim() for ax in panels}
    assert len(limits) == 1, "expected one shared colour scale"
    lo, hi = limits.pop()
    assert lo == pytest.approx(float(data.min())) and hi == pytest.approx(float(data.max()))
    assert panels[-1].get_xlabel() == "Keys" and panels[0].get_ylabel() == "Queries"
    assert fig._suptitle.get_text() == "weights"
    plt.close(fig)


@pytest.mark.parametrize("device", devices())
def test_show_heatmaps_takes_gradient_and_device_tensors_without_modifying_them(device):
    data = torch.rand(1, 2, 3, 4, device=device, dtype=torch.float16).requires_grad_()
    before = data.detach().clone()
    fig = attnkit.show_heatmaps(data, titles=["a", "b"], cmap="viridis")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    assert torch.equal(before, data.detach())
    plt.close(fig)


def test_show_heatmaps_rejects_bad_input_in_words():
    with pytest.raises(ValueError, match=r"expected a 2-D .* got 1 axes"):
        attnkit.show_heatmaps(torch.rand(5))
    with pytest.raises(ValueError, match="expected 2 titles"):
        attnkit.show_heatmaps(torch.rand(2, 3, 3), titles=["only one"])


def test_show_heatmaps_constant_input_and_numpy():
    fig = attnkit.show_heatmaps(np.zeros((3, 3)))
    lo, hi = fig.axes[0].images[0].get_clim()
    assert hi > lo
    plt.close(fig)


def test_show_heatmaps_changes_no_global_matplotlib_state():
    before = dict(matplotlib.rcParams)
    plt.close(attnkit.show_heatmaps(torch.rand(2, 2)))
    assert dict(matplotlib.rcParams) == before


def test_importing_attnkit_does_not_touch_matplotlib():
    code = "import sys, attnkit; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- check_query
def test_fixed_key_and_value_come_from_seed_447():
    torch.manual_seed(447)
    key = torch.randn(4, 3)
    key = (key / key.norm(dim=1, keepdim=True)).round(decimals=2)
    value = torch.randn(4, 3)
    value = (value / value.norm(dim=1, keepdim=True)).round(decimals=2)
    assert torch.equal(key, attnkit.KEY) and torch.equal(value, attnkit.VALUE)


def test_check_query_prints_and_returns_the_difference(capsys):
    query = 100 * attnkit.KEY[:1]
    error = attnkit.check_query(query, attnkit.VALUE[0])
    assert error == 0.0
    assert "maximum absolute element-wise difference: 0" in capsys.readouterr().out
    error = attnkit.check_query(torch.zeros(1, 3), attnkit.VALUE[:1])
    expected = (attnkit.VALUE.mean(0) - attnkit.VALUE[0]).abs().max().item()
    assert error == pytest.approx(expected, abs=1e-6)


def test_check_query_does_not_modify_its_inputs():
    query, key, value = torch.rand(2, 3), attnkit.KEY.clone(), attnkit.VALUE.clone()
    kept = attnkit.snapshot(query, key, value)
    attnkit.check_query(query, torch.zeros(2, 3), key=key, value=value)
    attnkit.check_unchanged(kept, [query, key, value])


def test_check_query_explains_shapes_in_words():
    with pytest.raises(ValueError, match=r"expected a 2-D query of shape \(n_queries, 3\).*reshape\(1, 3\)"):
        attnkit.check_query(attnkit.KEY[0], attnkit.VALUE[0])
    with pytest.raises(ValueError, match="expected each query to have 3 entries"):
        attnkit.check_query(torch.zeros(1, 4), attnkit.VALUE[0])
    with pytest.raises(ValueError, match=r"expected a target of shape \(4, 3\)"):
        attnkit.check_query(attnkit.KEY, attnkit.VALUE[0])
    with pytest.raises(TypeError, match="torch.Tensor"):
        attnkit.check_query([0.0, 0.0, 0.0], attnkit.VALUE[0])


@pytest.mark.parametrize("device", devices())
def test_check_query_runs_on_the_query_device(device):
    query = 100 * attnkit.KEY.to(device)
    assert attnkit.check_query(query, attnkit.VALUE.to(device)) == 0.0


# --------------------------------------------------------------------------- setup
def test_setup_seeds_and_reports(capsys, monkeypatch):
    monkeypatch.delenv("ATTNKIT_DEVICE", raising=False)
    device = attnkit.setup(seed=3)
    a = torch.rand(3)
    attnkit.setup(seed=3, verbose=False)
    assert torch.equal(a, torch.rand(3))
    assert f"device: {device}" in capsys.readouterr().out
    monkeypatch.setenv("ATTNKIT_DEVICE", "cpu")
    assert attnkit.get_device() == torch.device("cpu")


# --------------------------------------------------------------------------- named properties and messages in words
def test_prop_prefixes_the_property_and_keeps_the_message():
    with pytest.raises(AssertionError, match=r"^masked_softmax, 2-D: weights: expected shape"):
        with attnkit.prop("masked_softmax, 2-D"):
            attnkit.check_shape(torch.zeros(2), (3,), "weights")


def test_prop_says_not_answered_yet_for_a_stub_and_a_missing_answer():
    with pytest.raises(NotImplementedError, match="f: not answered yet"):
        with attnkit.prop("f"):
            raise NotImplementedError()
    with pytest.raises(NotImplementedError, match="query121: not answered yet: `query121` is not defined"):
        with attnkit.prop("query121", answer="query121"):
            query121  # noqa: B018, F821 - the missing answer
    with pytest.raises(AssertionError, match="expected a result, got NameError"):
        with attnkit.prop("f", answer="other"):
            undefined_helper  # noqa: B018, F821 - a typo in the student's code, not a missing answer


def test_prop_explains_float16_overflow_and_broadcasting_in_words():
    with pytest.raises(AssertionError, match=r"does not fit in float16.*torch.finfo\(X.dtype\).min"):
        with attnkit.prop("fill"):
            torch.zeros(2, dtype=torch.float16).masked_fill(torch.tensor([True, False]), -1e6)
    with pytest.raises(AssertionError, match=r"\(batch, 1, keys\)"):
        with attnkit.prop("mask"):
            torch.zeros(2, 3, 5) + torch.zeros(2, 5)


def test_prop_lets_the_graders_own_errors_through():
    class RunnerError(RuntimeError):
        pass

    RunnerError.__module__ = "grading.remote"
    with pytest.raises(RunnerError):
        with attnkit.prop("f"):
            raise RunnerError("kernel died")


def test_check_attribute_names_the_missing_attribute():
    with pytest.raises(AssertionError, match=r"self.attention_weights.*no such attribute") as info:
        attnkit.check_attribute(object(), "attention_weights", "DotProductAttention")
    assert "return" not in str(info.value).split("(")[0]


def test_check_two_key_weights_names_a_typical_mistake():
    right = torch.softmax(torch.tensor([2.0, 0.0]), dim=0)
    attnkit.check_two_key_weights(right, 2.0)
    wrong = torch.softmax(torch.tensor([4.0, 0.0]), dim=0)
    with pytest.raises(AssertionError, match=r"expected weights 0.881 and 0.119.*got 0.982 and 0.018.*missing"):
        attnkit.check_two_key_weights(wrong, 2.0, hints={4.0: "the 1/sqrt(d) factor is missing"})


def test_rows_and_masks_on_the_wrong_axis_are_named():
    weights = torch.softmax(torch.rand(2, 3, 4), dim=1)  # over the queries
    with pytest.raises(AssertionError, match="softmax over the queries axis"):
        attnkit.check_rows_sum_to_one(weights)
    lens = torch.tensor([1, 3])
    keep = torch.arange(4) < lens[:, None]  # (batch, keys), lined up with the queries of a (2, 2, 4) tensor
    wrong = torch.softmax(torch.rand(2, 2, 4).masked_fill(~keep, -torch.inf), dim=-1)
    with pytest.raises(AssertionError, match=r"along the queries axis.*\(batch, 1, keys\)"):
        attnkit.check_masked_zero(wrong, lens)


def test_check_finite_explains_float16_nan():
    with pytest.raises(AssertionError, match=r"in float16 a fill value such as -1e6 becomes -inf"):
        attnkit.check_finite(torch.tensor([float("nan")], dtype=torch.float16))
