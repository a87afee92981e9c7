"""Every checkable statement in the notebooks' prose, checked against the executed solution notebook.

Each claim names a notebook, a phrase that must appear in it (so a reworded claim cannot silently lose its
check), and a function that receives the namespace of the solution notebook run in-process
(tests/harness.py, quick settings as while grading) and asserts the statement.  Claims that depend on
timing are not asserted: the notebook prints their measured spread instead (see ``TIMING``).
Further facts of notebook 03 are measured in tests/notebooks/test_notebook03.py; the demo's presets in
tests/helpers/test_explorer.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from harness import answer_source, load, run_notebook

from attnkit import KEY, VALUE, attention

NB1 = "solutions/01_scoring_functions/scoring_functions.ipynb"
NB2 = "solutions/02_scoring_exercises/scoring_exercises.ipynb"
NB3 = "solutions/03_understanding_attention/understanding_attention.ipynb"


@dataclass(frozen=True)
class Claim:
    notebook: str
    quote: str  # appears verbatim in the notebook (markdown or code)
    check: Callable[[dict], None]


def _err(query, target, key=KEY):
    return float((attention(query, key, VALUE) - target).abs().max())


def _row2(row):
    m = KEY.clone()
    m[2] = row
    return m


# ------------------------------------------------------------------------------------------- notebook 1
def _variance_grows_like_d(ns):
    ratios = [r / d for d, r in zip(ns["dims"], ns["raw_var"])]
    assert all(0.9 <= r <= 1.1 for r in ratios), ratios


def _scaled_variance_near_1(ns):
    assert all(0.9 <= s <= 1.1 for s in ns["scaled_var"]), ns["scaled_var"]


def _large_scores_one_hot_small_gradients(ns):
    torch.manual_seed(0)
    d, m = 512, 10
    q, keys = torch.randn(200, 1, d), torch.randn(200, m, d)
    raw = (q @ keys.transpose(1, 2))[:, 0]  # (200, m): standard deviation about sqrt(512) = 22.6
    assert float(raw.std()) == pytest.approx(math.sqrt(d), rel=0.1)
    w_raw, w_scaled = torch.softmax(raw, dim=-1), torch.softmax(raw / math.sqrt(d), dim=-1)
    assert float(w_raw.max(dim=-1).values.median()) > 0.99 > float(w_scaled.max(dim=-1).values.median())

    def jacobian_norm(w):  # d softmax / d scores = diag(w) - w w^T, per row
        return torch.linalg.matrix_norm(torch.diag_embed(w) - w[:, :, None] * w[:, None, :]).median()

    assert float(jacobian_norm(w_raw)) < 0.05 < float(jacobian_norm(w_scaled))


def _in_place_changes_the_caller(ns):
    assert not torch.equal(ns["before"], ns["scores"])
    assert torch.tensor(-1e6).half().item() == -math.inf


def _mask_ops_constant_loop_ops_grow(ns):
    counts = ns["op_counts"]
    loops = [counts[b][0] for b in sorted(counts)]
    masks = [counts[b][1] for b in sorted(counts)]
    assert loops == sorted(loops) and len(set(loops)) == len(loops), loops
    assert len(set(masks)) == 1 and masks[0] < loops[0], masks


def _concatenation_identity(ns):
    assert torch.allclose(ns["two_products"], ns["one_layer_on_the_pair"], atol=1e-5)


def _hand_example_scale(ns):
    w = torch.softmax(torch.tensor([4 / math.sqrt(4), 0.0]), dim=0)
    assert [round(float(x), 3) for x in w] == [0.881, 0.119]


def _hand_example_additive(ns):
    scores = torch.tensor([2 * math.tanh(-1.0), 2 * math.tanh(1.0)])
    assert round(float(scores[1]), 3) == 1.523 and round(float(scores[1] - scores[0]), 3) == 3.046
    assert [round(float(x), 3) for x in torch.softmax(scores, dim=0)] == [0.045, 0.955]


def _bmm_strict_matmul_broadcasts(ns):
    A, W = ns["A"], ns["W"]
    assert tuple(torch.matmul(A, W).shape) == (2, 3, 5)
    with pytest.raises(RuntimeError):
        torch.bmm(A, W)


def _masked_weights_are_white(ns):
    import matplotlib

    weights = ns["attention"].attention_weights
    lens = ns["valid_lens"].cpu()
    assert all(bool((weights[i, 0, int(n):] == 0).all()) for i, n in enumerate(lens))
    assert matplotlib.colormaps["Reds"](0.0)[:3] > (0.99, 0.95, 0.9)  # the lowest colour of the map is white


# ------------------------------------------------------------------------------------------- notebook 2
def _dot_prefers_longest_key(ns):
    q = torch.tensor([1.0, 1.0])
    keys = [torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0]), torch.tensor([4.0, 4.0])]
    dots = [float(q @ k) for k in keys]
    dists = [float(((q - k) ** 2).sum()) for k in keys]
    assert int(np.argmax(dots)) == 2 and int(np.argmin(dists)) == 0


def _keys_grow(ns):
    lengths = ns["demo_keys"][0].norm(dim=-1).cpu()
    assert torch.allclose(lengths, torch.linspace(0.3, 3.0, 8), atol=1e-5)


def _dot_weighs_long_keys_more(ns):
    assert bool((ns["share_dot"] > ns["share_distance"]).all()), (ns["share_dot"], ns["share_distance"])


def _distance_picks_nearest(ns):
    winners = ns["distance_attention"].attention_weights[0].argmax(dim=-1).cpu()
    assert torch.equal(winners, ns["nearest_key"].cpu())


def _dot_mostly_elsewhere(ns):
    winners = ns["dot_attention"].attention_weights[0].argmax(dim=-1).cpu()
    assert int((winners != ns["nearest_key"].cpu()).sum()) >= 3


def _config(device_type):
    """The measurement settings the notebook uses on a CPU or a GPU (not the grading's quick ones)."""
    source = next(c.source for c in load(NB2).cells if c.source.startswith("import logging"))
    ns = {"torch": torch, "device": torch.device(device_type), "plt": __import__("matplotlib.pyplot").pyplot,
          "os": type("os", (), {"environ": {}})()}
    exec(source.replace('print(f"device:', 'str(f"device:'), ns)  # noqa: S102 - the notebook's own cell
    return ns


def _d_much_smaller_than_n(ns):
    for device_type in ("cpu", "cuda"):
        cfg = _config(device_type)
        assert cfg["QUICK"] is False
        assert max(cfg["d_sizes"]) <= cfg["n_for_d"] / 16, (device_type, cfg["d_sizes"], cfg["n_for_d"])
        if device_type == "cpu":
            assert cfg["n_for_d"] == 2048 and max(cfg["d_sizes"]) == 128


def _model_slopes(ns):
    for device_type in ("cpu", "cuda"):
        cfg = _config(device_type)
        d_fit = np.array(cfg["d_sizes"][-3:], dtype=float)
        n = cfg["n_for_d"]
        flops = np.polyfit(np.log(d_fit), np.log(4 * n * n * d_fit), 1)[0]
        traffic = np.polyfit(np.log(d_fit), np.log(4 * n * d_fit + 4 * n * n), 1)[0]
        assert flops == pytest.approx(1.0) and traffic < 0.1, (device_type, flops, traffic)
    assert ns["flop_model_slope"] == pytest.approx(1.0)


def _projection_crossover(ns):
    d = 64
    n = 1.5 * d
    assert 6 * n * d * d == pytest.approx(4 * n * n * d)
    assert 6 * 32 * d * d > 4 * 32 * 32 * d and 6 * 512 * d * d < 4 * 512 * 512 * d


def _intensity_about_d_over_4(ns):
    flops, traffic = ns["attention_flops"], ns["attention_memory_traffic"]
    ratio = flops(8192, 8192, 64, 64) / traffic(8192, 8192, 64, 64)
    assert ratio == pytest.approx(64 / 4, rel=0.02)


def _size_check_numbers(ns):
    n, m, d, float32 = 256, 256, 128, 4
    assert n * m * d * float32 == 32 * 2**20 and n * m * float32 == 2**18  # 32 MiB and 0.25 MiB
    assert n * m * float32 < 8 * 2**20 < n * m * d * float32  # the check's threshold lies between the two


def _fused_memory_linear_unfused_quadratic(ns):
    slopes = ns["measured_slopes"]
    assert 1.5 < slopes["peak memory vs n, unfused"] < 2.1 and 0.9 < slopes["peak memory vs n, fused"] < 1.1


# ------------------------------------------------------------------------------------------- notebook 3
_D = KEY[0] - KEY[1]
_U = (KEY[0] + KEY[1]) / 2
_W = _U - (_U @ _D) / (_D @ _D) * _D  # scores k0 and k1 exactly alike
_MEAN2 = VALUE[0:2].mean(0, keepdim=True)
_K64 = KEY.double()
_D64, _U64 = _K64[0] - _K64[1], (_K64[0] + _K64[1]) / 2
_W64 = _U64 - (_U64 @ _D64) / (_D64 @ _D64) * _D64  # the same direction in float64


def _exact_selection_at_30(ns):
    assert _err(ns["query121"], VALUE[0:1]) == 0.0 and _err(ns["query122"], VALUE) == 0.0
    assert float(answer_source(load(NB3), "query121").split("S = ")[1].split()[0]) == 30
    assert 30 * float(KEY.abs().max()) < torch.finfo(torch.float16).max  # no float16 overflow at S = 30


def _simple_direction_never_zero(ns):
    grid = torch.logspace(-1, 5, 601)
    errors = torch.tensor([_err(float(s) * _U[None], _MEAN2) for s in grid])
    assert float(errors.min()) > 2e-3 and float(errors.min()) == pytest.approx(2.13e-3, abs=5e-5)


def _better_direction_reaches_zero(ns):
    scores = _W64 @ _K64.T
    assert float(scores[0]) == pytest.approx(float(scores[1]), abs=1e-12)  # alike up to float rounding
    assert _err(20 * _W[None] / _W.norm(), _MEAN2) == 0.0
    assert max(_err(L * _W[None] / _W.norm(), _MEAN2) for L in (15, 20, 30, 40, 50)) <= 1e-6


def _better_direction_passes_the_check(ns):
    assert _err(20 * _W[None] / _W.norm(), _MEAN2) <= 5e-3  # accepted by the 5e-3 tolerance of 1.3.2


def _imbalance_only_with_unequal_scores(ns):
    for c in (1.0, 100.0, 1e4):
        w = torch.softmax(c * _W64[None] @ _K64.T, dim=-1)[0]
        assert float((w[0] - w[1]).abs()) <= 1e-9
    assert abs(ns["score_gap"]) > 0 and ns["imbalances"][-1] > 0.1  # the reference query132 drifts


def _static_figure_before_the_slider(ns):
    fig = ns["fig"]
    assert fig.get_suptitle() == "Weights of c · query132 for three factors c"


def _unit_row_caps_key_2(ns):
    q = ns["query132"]
    scores = (q @ KEY.T)[0]
    assert float(q.norm()) - float(scores[1]) == pytest.approx(1.3, abs=0.05)
    assert round(float(scores[1]), 2) == 5.12


def _longer_query_reaches_v2(ns):
    q = ns["query132"]
    m = _row2(q[0] / q.norm())
    assert _err(3 * q, VALUE[2:3], m) == pytest.approx(0.017, abs=5e-4)
    assert _err(5 * q, VALUE[2:3], m) == pytest.approx(1.4e-3, abs=5e-5)
    assert _err(q, VALUE[2:3], m) == pytest.approx(0.147, abs=1e-3)


def _float16_overflow_at_1e5(ns):
    scores16 = (1e5 * KEY[0:1] / KEY[0].norm()).half() @ KEY.half().T
    assert torch.isnan(torch.softmax(scores16, dim=-1)).all()


CLAIMS = {
    "nb1: unscaled variance grows like d": Claim(NB1, "close to 1 for every $d$", _variance_grows_like_d),
    "nb1: large scores give one-hot weights and vanishing gradients": Claim(
        NB1, "Large scores push softmax towards a one-hot vector whose gradients vanish", _large_scores_one_hot_small_gradients),
    "nb1: scaled variance stays near 1": Claim(NB1, "The scaled variance stays close to 1", _scaled_variance_near_1),
    "nb1: in place changes the caller, -1e6 overflows float16": Claim(
        NB1, "it changes the caller's tensor, and $-10^6$ does not fit in\n`float16`", _in_place_changes_the_caller),
    "nb1: a mask runs the same operations for any batch": Claim(
        NB1, "the masked one runs the same few\noperations for any batch", _mask_ops_constant_loop_ops_grow),
    "nb1: additive score is an MLP on the concatenation": Claim(
        NB1, "$\\mathbf W_q \\mathbf q + \\mathbf W_k \\mathbf k = [\\mathbf W_q\\ \\mathbf W_k]\\,[\\mathbf q; \\mathbf k]$",
        _concatenation_identity),
    "nb1: hand example for the scale": Claim(NB1, "$e^2/(e^2+1) \\approx 0.881$ and $0.119$", _hand_example_scale),
    "nb1: hand example for additive attention": Claim(NB1, "so the weights are $0.045$ and $0.955$", _hand_example_additive),
    "nb1: bmm is strict, matmul broadcasts": Claim(NB1, "`torch.bmm` is strict", _bmm_strict_matmul_broadcasts),
    "nb1: masked weights are the white cells": Claim(NB1, "the white cells in the heatmap", _masked_weights_are_white),
    "nb2: the dot product prefers the longest key": Claim(
        NB2, "The dot product prefers the longest key; the distance prefers the key equal to the query",
        _dot_prefers_longest_key),
    "nb2: the keys' lengths grow": Claim(NB2, "eight keys whose lengths grow from left to right (0.3 to 3.0", _keys_grow),
    "nb2: dot product weighs long keys more, for every query": Claim(
        NB2, "For every query the dot product puts more of its weight on the long keys", _dot_weighs_long_keys_more),
    "nb2: distance's largest weight on the nearest key": Claim(
        NB2, "the distance score's largest weight always sits on the nearest key", _distance_picks_nearest),
    "nb2: dot product's largest weight mostly elsewhere": Claim(
        NB2, "The dot product's largest weight mostly sits elsewhere", _dot_mostly_elsewhere),
    "nb2: d << n in the time-vs-d measurement": Claim(NB2, "$d \\le n/16$ (on a CPU $n = 2048$, $d \\le 128$)",
                                                     _d_much_smaller_than_n),
    "nb2: the models' slopes": Claim(NB2, "(FLOPs: 1, traffic: near 0 for $d \\ll n$)", _model_slopes),
    "nb2: projections and attention equal at n = 1.5 d": Claim(NB2, "at $n = 1.5\\,d$", _projection_crossover),
    "nb2: arithmetic intensity about d/4": Claim(NB2, "arithmetic intensity is only about $d/4$ in `float32`", _intensity_about_d_over_4),
    "nb2: the size-check numbers": Claim(NB2, "With 256 queries and keys of length 128, one (n, m, d) tensor is 32 MiB, the (n, m) scores 0.25 MiB.",
                                         _size_check_numbers),
    "nb2: fused memory linear, unfused quadratic": Claim(NB2, "linear memory", _fused_memory_linear_unfused_quadratic),
    "nb3: S = 30 selects exactly and fits float16": Claim(NB3, "$S = 30$ is exact in float32", _exact_selection_at_30),
    "nb3: multiples of k0 + k1 never reach 0": Claim(
        NB3, "stop near $2.1\\cdot10^{-3}$ at their best length and never reach 0", _simple_direction_never_zero),
    "nb3: a direction scoring k0 and k1 alike reaches 0": Claim(
        NB3, "Error 0 is possible with a better direction", _better_direction_reaches_zero),
    "nb3: the tolerance accepts both": Claim(NB3, "the tolerance accepts both", _better_direction_passes_the_check),
    "nb3: imbalance only with unequal scores": Claim(
        NB3, "The imbalance grows with $c$ only if your query scores\nkeys 0 and 1 differently", _imbalance_only_with_unequal_scores),
    "nb3: a static figure for viewers without a kernel": Claim(
        NB3, "without a live kernel, or while grading, only the three panels are shown", _static_figure_before_the_slider),
    "nb3: a unit row caps key 2's lead at about 1.3": Claim(NB3, "$\\|\\mathbf q\\| - 5.12 \\approx 1.3$", _unit_row_caps_key_2),
    "nb3: a longer query reaches v2": Claim(NB3, "a longer key row or a\n  longer query lifts that limit", _longer_query_reaches_v2),
    "nb3: S = 1e5 overflows in float16": Claim(NB3, "Very long queries ($S = 10^5$)\n  overflow in float16", _float16_overflow_at_1e5),
}

#: claims that depend on timing: the notebook prints the measured spread; nothing about their value is asserted
TIMING = {
    "nb2: time-vs-d slope": "the cell repeats the fit 3 times and prints the range (in one run: 0.51 to 0.59)",
    "nb2: time-vs-n slope": "printed as measured; the model answer only says it fits both models",
}

#: statements that were false, removed from every notebook
REMOVED = [
    "both a short and a long query fail",
    "why is there no length with error 0",
    "cannot be reached at all",
    "no query can reach",
    "simple answers here do not reach 0",
    "hardly changes",
    "piles its weight onto the long keys",
    "fixed random weights, so its preferences are learned",
    "so some targets are out of reach",
    "Which of the two curves do your points follow?",
    "Keys (growing length)",
]


@pytest.fixture(scope="module")
def namespaces():
    return {path: run_notebook(load(path)).namespace for path in (NB1, NB2, NB3)}


def _text(path):
    return "\n".join(c.source for c in load(path).cells)


@pytest.mark.parametrize("name", CLAIMS)
def test_claim(namespaces, name):
    claim = CLAIMS[name]
    assert claim.quote in _text(claim.notebook), f"{name}: the notebook no longer says {claim.quote!r}"
    claim.check(namespaces[claim.notebook])


@pytest.mark.parametrize("path", [NB1, NB2, NB3, "notebooks/00_demo/attention_explorer.ipynb"])
def test_false_statements_are_gone(path):
    text = _text(path)
    present = [phrase for phrase in REMOVED if phrase in text]
    assert not present, present


def test_every_notebook_has_claims():
    assert {c.notebook for c in CLAIMS.values()} == {NB1, NB2, NB3}
