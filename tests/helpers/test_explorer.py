"""attnkit.explorer: the maths behind the picture, the figure, the widget and its static fallback."""

from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest
import torch

from attnkit import explorer
from attnkit.explorer import (
    DEFAULT_KEYS,
    QUERY_PRESETS,
    SCORING_FUNCTIONS,
    ExplorerState,
    attend,
    draw_comparison,
    draw_explorer,
    explore,
    score,
    use_widgets,
)

SCORINGS = list(SCORING_FUNCTIONS)
QUERIES = [(1.5, 0.9), *QUERY_PRESETS.values(), (-3.5, 3.5)]


# --------------------------------------------------------------------------- maths
@pytest.mark.parametrize("scoring", SCORINGS)
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("scale", [0.0, 0.01, 1.0, 20.0, 1e6])
def test_weights_are_a_distribution(scoring, query, scale):
    result = attend(ExplorerState(scoring=scoring, query=query, scale=scale))
    assert np.all(np.isfinite(result.weights)) and np.all(result.weights >= 0)
    assert result.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(result.output, result.weights @ DEFAULT_KEYS)  # values default to the keys


@pytest.mark.parametrize("scoring", SCORINGS)
@pytest.mark.parametrize("valid_len", [1, 2, 4, 6, 100])
def test_valid_length_masks_the_keys_beyond_it(scoring, valid_len):
    result = attend(ExplorerState(scoring=scoring, query=(0.3, -0.7), scale=2.0, valid_len=valid_len))
    n_valid = min(valid_len, len(DEFAULT_KEYS))
    assert result.valid.tolist() == [i < n_valid for i in range(len(DEFAULT_KEYS))]
    assert np.all(result.weights[n_valid:] == 0.0)
    assert np.all(result.weights[:n_valid] > 0.0)
    assert result.weights.sum() == pytest.approx(1.0)
    # The output is a weighted average of the valid values only.
    assert np.allclose(result.output, result.weights[:n_valid] @ DEFAULT_KEYS[:n_valid])


def test_a_single_valid_key_gets_all_the_weight():
    result = attend(ExplorerState(query=(-3.0, -3.0), scale=5.0, valid_len=1))
    assert result.weights.tolist()[0] == 1.0
    assert np.allclose(result.output, DEFAULT_KEYS[0])


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("valid_len", [None, 3])
def test_large_scale_selects_the_nearest_key_for_the_distance_score(query, valid_len):
    n = len(DEFAULT_KEYS) if valid_len is None else valid_len
    nearest = int(np.argmin(np.linalg.norm(DEFAULT_KEYS[:n] - np.array(query), axis=1)))
    result = attend(ExplorerState(scoring="distance", query=query, scale=200.0, valid_len=valid_len))
    assert int(np.argmax(result.weights)) == nearest
    assert result.weights[nearest] > 0.99
    assert np.allclose(result.output, DEFAULT_KEYS[nearest], atol=0.05)


@pytest.mark.parametrize("scoring", ["dot product", "scaled dot product"])
@pytest.mark.parametrize("query", [q for q in QUERIES if np.hypot(*q) > 1])  # not near the origin
def test_large_scale_selects_the_most_aligned_key_for_dot_products(scoring, query):
    best = int(np.argmax(DEFAULT_KEYS @ np.array(query)))
    result = attend(ExplorerState(scoring=scoring, query=query, scale=1000.0))
    assert int(np.argmax(result.weights)) == best
    assert result.weights[best] > 0.99


@pytest.mark.parametrize("scoring", SCORINGS)
def test_large_scale_selects_the_highest_score(scoring):
    for query in QUERIES:
        state = ExplorerState(scoring=scoring, query=query, scale=1e4)
        result = attend(state)
        assert int(np.argmax(result.weights)) == int(np.argmax(result.scores))


@pytest.mark.parametrize("scoring", SCORINGS)
@pytest.mark.parametrize("valid_len", [None, 2, 5])
def test_scale_near_zero_averages_the_valid_values(scoring, valid_len):
    n = len(DEFAULT_KEYS) if valid_len is None else valid_len
    values = np.arange(len(DEFAULT_KEYS), dtype=float) ** 2
    for scale in (0.0, 1e-6):
        result = attend(ExplorerState(scoring=scoring, query=(2.0, -1.0), scale=scale, valid_len=valid_len),
                        values=values)
        assert np.allclose(result.weights[:n], 1.0 / n, atol=1e-4)
        assert result.output == pytest.approx(values[:n].mean(), abs=1e-3)


def test_scores_follow_their_formulas():
    q, k = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    assert score(q, k, "dot product") == pytest.approx(1.0)
    assert score(q, k, "scaled dot product") == pytest.approx(1.0 / np.sqrt(2))
    assert score(q, k, "distance") == pytest.approx(-(4 + 9) / (2 * np.sqrt(2)))  # notebook 02's score, d = 2
    additive = score(q, k, "additive")
    assert additive == score(q, k, "additive"), "the additive weights are fixed"
    assert additive != score(q, -k, "additive")
    with pytest.raises(ValueError, match="unknown scoring function"):
        score(q, k, "cosine")


def test_state_is_validated_in_words():
    with pytest.raises(ValueError, match="scoring"):
        ExplorerState(scoring="nope")
    with pytest.raises(ValueError, match="scale S"):
        ExplorerState(scale=-1.0)
    with pytest.raises(ValueError, match="valid length"):
        ExplorerState(valid_len=0)
    with pytest.raises(ValueError, match="keys"):
        attend(ExplorerState(), keys=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="values"):
        attend(ExplorerState(), values=np.zeros(4))


def test_torch_keys_and_values_are_accepted_and_left_untouched():
    keys = torch.tensor(DEFAULT_KEYS, dtype=torch.float32, requires_grad=True)
    values = torch.arange(6.0)
    before = keys.detach().clone(), values.clone()
    result = attend(ExplorerState(scale=0.0), keys, values)
    assert result.output == pytest.approx(2.5)
    assert torch.equal(keys.detach(), before[0]) and torch.equal(values, before[1])


# --------------------------------------------------------------------------- figures
def _image_arrays(fig):
    return [im.get_array() for ax in fig.axes for im in ax.images]


def test_figure_is_a_pure_function_of_the_state():
    state = ExplorerState(scoring="additive", query=(-1.0, 0.5), scale=3.0, valid_len=4)
    first, second = explorer.figure_png(draw_explorer(state)), explorer.figure_png(draw_explorer(state))
    assert first == second
    other = explorer.figure_png(draw_explorer(ExplorerState(scoring="additive", query=(1.0, 0.5), scale=3.0,
                                                            valid_len=4)))
    assert other != first


def test_figure_shows_the_weights_of_the_state():
    state = ExplorerState(scoring="distance", query=(2.0, 0.5), scale=4.0, valid_len=5)
    fig = draw_explorer(state)
    heatmap = np.ma.getdata(_image_arrays(fig)[0])[0]
    assert np.allclose(heatmap, attend(state).weights)
    assert np.ma.getmaskarray(_image_arrays(fig)[0])[0].tolist() == [False] * 5 + [True]
    assert "S = 4" in fig.get_suptitle() and "valid length 5 of 6" in fig.get_suptitle()


def test_redrawing_into_the_same_figure_gives_the_same_picture_as_a_new_one():
    a, b = ExplorerState(query=(1.0, 1.0)), ExplorerState(query=(-2.0, 0.0), scale=8.0, valid_len=3)
    fig = draw_explorer(a)
    fig = draw_explorer(b, fig=fig)
    assert explorer.figure_png(fig) == explorer.figure_png(draw_explorer(b))


def test_comparison_puts_selection_next_to_averaging():
    fig = draw_comparison(ExplorerState(scoring="distance", query=(2.2, 0.5)), large_scale=20.0, small_scale=0.01)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("Selection: S = 20") for t in titles)
    assert any(t.startswith("Averaging: S = 0.01") for t in titles)
    selection, averaging = (np.ma.getdata(a)[0] for a in _image_arrays(fig))
    assert selection.max() > 0.9 and int(np.argmax(selection)) == 0  # key 1 is the nearest
    assert np.allclose(averaging, 1 / 6, atol=0.01)


def test_figures_change_no_global_matplotlib_state():
    before = dict(matplotlib.rcParams)
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    draw_explorer(ExplorerState())
    draw_comparison(ExplorerState())
    explore(interactive=False)
    assert dict(matplotlib.rcParams) == before
    assert plt.get_fignums() == open_before, "the explorer must not register figures with pyplot"


# --------------------------------------------------------------------------- fallback decision
def test_static_fallback_returns_a_figure_that_shows_itself_as_png():
    fig = explore(scoring="dot product", query=(0.5, 2.0), interactive=False)
    assert isinstance(fig, matplotlib.figure.Figure)
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG")
    comparison = explore(view="selection vs averaging", interactive=False)
    assert isinstance(comparison, matplotlib.figure.Figure)
    assert "Selection vs averaging" in comparison.get_suptitle()


def test_auto_is_static_outside_a_kernel():
    # pytest is not a Jupyter kernel: no front end can show a widget here.
    assert use_widgets(None) is False
    assert isinstance(explore(), matplotlib.figure.Figure)


class _FakeKernelShell:
    kernel = object()


@pytest.fixture
def in_a_kernel(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: _FakeKernelShell())
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("ATTNKIT_WIDGETS", raising=False)


def test_auto_is_interactive_in_a_kernel(in_a_kernel):
    assert use_widgets(None) is True
    assert isinstance(explore(), explorer.AttentionExplorer)


@pytest.mark.parametrize("var, value", [("NBGRADER_EXECUTION", "autograde"), ("ATTNKIT_WIDGETS", "0")])
def test_auto_is_static_when_grading_or_told_so(in_a_kernel, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    assert use_widgets(None) is False
    assert isinstance(explore(), matplotlib.figure.Figure)


def test_auto_is_static_without_ipywidgets(in_a_kernel, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    assert use_widgets(None) is False
    assert isinstance(explore(), matplotlib.figure.Figure)
    with pytest.raises(ImportError, match="pip install"):
        explore(interactive=True)


# --------------------------------------------------------------------------- widgets (no front end)
def test_widget_builds_without_a_front_end_and_redraws_on_every_control():
    ex = explore(interactive=True)
    assert isinstance(ex, explorer.AttentionExplorer)
    c = ex.controls
    assert set(c) == {"scoring", "view", "preset", "x", "y", "scale", "valid_len"}
    seen = {ex.png}
    assert ex.png.startswith(b"\x89PNG") and bytes(ex.image.value) == ex.png
    changes = [("x", -2.0), ("y", 2.5), ("scale", 10.0), ("valid_len", 3), ("scoring", "distance"),
               ("preset", "opposite key 1"), ("view", "selection vs averaging")]
    for name, value in changes:
        renders = ex.renders
        c[name].value = value
        assert ex.renders == renders + 1, f"changing {name} should redraw exactly once"
        assert ex.png not in seen, f"changing {name} did not change the figure"
        assert bytes(ex.image.value) == ex.png
        seen.add(ex.png)
    assert (ex.state.scoring, ex.state.query, ex.state.valid_len) == ("distance", QUERY_PRESETS["opposite key 1"], 3)
    assert ex.state.scale == pytest.approx(10.0)
    assert c["scale"].disabled, "S is fixed (large vs near 0) in the comparison view"
    assert "masked" in ex.readout.value


def test_moving_a_slider_after_a_preset_returns_to_slider_mode():
    ex = explore(interactive=True)
    ex.controls["preset"].value = "close to key 1"
    assert ex.state.query == QUERY_PRESETS["close to key 1"]
    ex.controls["x"].value = 0.0
    assert ex.controls["preset"].value == "(sliders)"
    assert ex.state.query == (0.0, QUERY_PRESETS["close to key 1"][1])


def test_widget_state_matches_the_pure_figure():
    ex = explore(scoring="additive", query=(-1.0, 1.0), scale=2.0, valid_len=4, interactive=True)
    assert ex.png == explorer.figure_png(draw_explorer(ex.state))


def test_widget_output_carries_a_static_png_for_viewers_without_widgets():
    ex = explore(interactive=True)
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] == ex.png
    assert bundle["text/plain"].startswith("AttentionExplorer(")


# --------------------------------------------------------------------------- consistency, readability, honest presets
def test_distance_score_is_notebook_2s():
    """-||q - k||^2 / (2 sqrt(d)), as DistanceAttention in notebook 02 computes it (here d = 2)."""
    from harness import answer_source, load

    source = answer_source(load("solutions/02_scoring_exercises/scoring_exercises.ipynb"), "DistanceAttention")
    assert "/ math.sqrt(d)" in source and "0.5 * key_norms" in source
    torch.manual_seed(0)
    q, keys = torch.randn(2), torch.randn(5, 2)
    expected = (q @ keys.T - 0.5 * (keys**2).sum(-1)) / np.sqrt(2) - 0.5 * float(q @ q) / np.sqrt(2)
    assert np.allclose([score(q.numpy(), k.numpy(), "distance") for k in keys], expected.numpy(), atol=1e-6)
    assert "2√d" in SCORING_FUNCTIONS["distance"]


def test_figures_are_sized_for_a_projector():
    from matplotlib.text import Text

    for fig in (draw_explorer(ExplorerState(valid_len=3)), draw_comparison(ExplorerState())):
        png = explorer.figure_png(fig)
        width = int.from_bytes(png[16:20], "big")
        height = int.from_bytes(png[20:24], "big")
        assert width >= 1280 and height >= 700, (width, height)
        texts = [t for t in fig.findobj(Text) if t.get_text().strip()]
        sizes = {round(t.get_fontsize()) for t in texts}
        assert min(sizes) >= 12, sorted(sizes)
        assert not any(t.get_text() == "scale" for t in texts), "the colour bar shows weights, not the scale S"


def _top(preset, scoring, valid_len=None):
    result = attend(ExplorerState(scoring=scoring, query=QUERY_PRESETS[preset], scale=1.0, valid_len=valid_len))
    return int(result.weights.argmax()) + 1, float(result.weights.max())


def test_demo_presets_show_what_the_demo_notebook_says():
    """Section 3 of notebooks/00_demo: each contrast it describes shows at its presets, at S = 1."""
    short, long = QUERY_PRESETS["short query towards key 1"], QUERY_PRESETS["long query towards key 1"]
    assert np.allclose(np.array(long), 7 * np.array(short))  # "the same direction, 7 times longer"
    # the dot product: spread for the short query, selecting for the long one
    assert _top("short query towards key 1", "dot product") == (1, pytest.approx(0.34, abs=0.005))
    assert _top("long query towards key 1", "dot product") == (1, pytest.approx(0.90, abs=0.005))
    # the distance score sharpens too, less
    assert _top("short query towards key 1", "distance") == (1, pytest.approx(0.23, abs=0.005))
    assert _top("long query towards key 1", "distance") == (1, pytest.approx(0.76, abs=0.005))
    nearest = int(np.argmin(np.linalg.norm(DEFAULT_KEYS - np.array(long), axis=1)))
    assert nearest == 0  # "the long query lies near k1"
    # valid length: k6 wins, then k1 once k6 is padding
    assert _top("long query towards key 6", "dot product")[0] == 6
    assert _top("long query towards key 6", "dot product", valid_len=3)[0] == 1
    assert _top("long query towards key 6", "distance")[0] == 6
    assert _top("long query towards key 6", "distance", valid_len=3)[0] == 1
    # "these six keys have similar lengths (1.66 to 2.04)"
    lengths = np.linalg.norm(DEFAULT_KEYS, axis=1)
    assert round(lengths.min(), 2) == 1.66 and round(lengths.max(), 2) == 2.04


def test_demo_notebook_quotes_the_presets_it_uses():
    from harness import load

    nb = load("notebooks/00_demo/attention_explorer.ipynb")
    text = "\n".join(c.source for c in nb.cells)
    for preset in ("short query towards key 1", "long query towards key 1", "long query towards key 6"):
        assert preset in text and preset in QUERY_PRESETS
    assert "query=(2.6, -2.2)" in text and QUERY_PRESETS["long query towards key 6"] == (2.6, -2.2)
    assert "fixed random weights, so its preferences are learned" not in text
