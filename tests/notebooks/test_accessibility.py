"""Accessibility: alt text for every markdown image, titles and axis labels on every figure,
colour maps that colour-blind viewers can read."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from IPython.core.inputtransformer2 import TransformerManager
from notebook_inventory import ROOT, every_notebook, graded, read, rel

import attnkit
from attnkit.explorer import SCORING_FUNCTIONS, ExplorerState, draw_comparison, draw_explorer, explore

NOTEBOOKS = every_notebook()
_python = TransformerManager().transform_cell

# Sequential maps whose lightness changes monotonically (readable without hue) and the
# perceptually uniform ones designed for colour-vision deficiencies.
SAFE_CMAPS = {
    "viridis", "cividis", "magma", "inferno", "plasma", "Greys", "gray", "binary",
    "Blues", "Reds", "Oranges", "Purples", "Greens", "YlOrBr", "YlOrRd", "OrRd", "PuBu", "BuPu", "YlGnBu",
}
SAFE_CMAPS |= {f"{name}_r" for name in SAFE_CMAPS}


# --------------------------------------------------------------------------- markdown images
MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)[^)]*\)")


class _ImgAlts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[tuple[str | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            attrs = dict(attrs)
            self.images.append((attrs.get("alt"), attrs.get("src")))


def images_without_alt(markdown: str) -> list[str]:
    missing = [f"![]({url})" for alt, url in MD_IMAGE.findall(markdown) if not alt.strip()]
    parser = _ImgAlts()
    parser.feed(markdown)
    missing += [f"<img src={src!r}>" for alt, src in parser.images if not (alt or "").strip()]
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[rel(p) for p in NOTEBOOKS])
def test_every_markdown_image_has_alt_text(path: Path):
    problems = []
    for index, cell in enumerate(read(path).cells):
        if cell.cell_type == "markdown":
            problems += [f"cell {index}: {img}" for img in images_without_alt(cell.source)]
    assert not problems, f"{rel(path)}: images without alt text: {problems}"


def test_the_alt_text_rule_catches_what_it_should():
    assert images_without_alt("![](a.png)") and images_without_alt('<img src="a.png">')
    assert images_without_alt('<img src="a.png" alt="">')
    assert not images_without_alt("[![Open In Colab](badge.svg)](https://x) and <img alt='weights' src='w.png'>")


# --------------------------------------------------------------------------- figures
def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def unlabelled(fig) -> list[str]:
    """Axes of ``fig`` that a reader could not interpret: no title, no axis labels.

    Panels of a shared grid may rely on their neighbours (the bottom row's x label, the first
    column's y label, the top row's titles or the figure's suptitle); a colour bar needs a label.
    """
    problems = []
    suptitle = fig._suptitle.get_text().strip() if fig._suptitle else ""
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {i} ({ax.get_title()!r})"
        if _is_colorbar(ax):
            if not (ax.get_ylabel().strip() or ax.get_xlabel().strip()):
                problems.append(f"{name}: colour bar without a label")
            continue
        xs = [ax, *ax.get_shared_x_axes().get_siblings(ax)]
        ys = [ax, *ax.get_shared_y_axes().get_siblings(ax)]
        if not any(a.get_xlabel().strip() for a in xs):
            problems.append(f"{name}: no x label")
        if not any(a.get_ylabel().strip() for a in ys):
            problems.append(f"{name}: no y label")
        if not (suptitle or any(a.get_title().strip() for a in xs)):
            problems.append(f"{name}: no title (and the figure has no suptitle)")
    return problems


def unsafe_colour_maps(fig) -> list[str]:
    names = []
    for ax in fig.axes:
        for artist in [*ax.images, *ax.collections]:
            if getattr(artist, "get_array", lambda: None)() is not None and hasattr(artist, "get_cmap"):
                names.append(artist.get_cmap().name)
    return [n for n in names if n not in SAFE_CMAPS]


EXPLORER_FIGURES = [
    pytest.param(lambda s=s, v=v: (draw_explorer if v == "explore" else draw_comparison)(
        ExplorerState(scoring=s, query=(0.7, -1.2), scale=2.0, valid_len=4)), id=f"{v}-{s}")
    for s in SCORING_FUNCTIONS for v in ("explore", "compare")
]


@pytest.mark.parametrize("make", EXPLORER_FIGURES)
def test_explorer_figures_are_fully_labelled_and_colour_blind_safe(make):
    fig = make()
    assert not unlabelled(fig), unlabelled(fig)
    for ax in fig.axes:  # stricter than the rule: every explorer panel has its own title and labels
        if not _is_colorbar(ax):
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax
    assert not unsafe_colour_maps(fig), unsafe_colour_maps(fig)
    assert fig.get_suptitle()


def test_explorer_with_scalar_values_is_labelled():
    fig = explore(values=np.arange(6.0), interactive=False)
    assert not unlabelled(fig) and not unsafe_colour_maps(fig)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 2, 3, 4)])
def test_show_heatmaps_as_the_notebooks_call_it_is_labelled(shape):
    cols = shape[-3] if len(shape) >= 3 else 1
    fig = attnkit.show_heatmaps(torch.rand(shape), titles=[f"head {i}" for i in range(cols)])
    assert not unlabelled(fig), unlabelled(fig)
    assert not unsafe_colour_maps(fig), unsafe_colour_maps(fig)
    plt.close(fig)
    fig = attnkit.show_heatmaps(torch.rand(shape), suptitle="Attention weights")
    assert not unlabelled(fig), unlabelled(fig)
    plt.close(fig)


def _calls(source: str, name: str) -> list[ast.Call]:
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:  # pragma: no cover - a student stub may not parse; the solutions must
        return []
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[rel(p) for p in NOTEBOOKS])
def test_notebooks_title_their_heatmaps_and_use_safe_colour_maps(path: Path):
    """show_heatmaps draws no title by itself: every call must pass titles= or suptitle=."""
    problems = []
    for index, cell in enumerate(read(path).cells):
        if cell.cell_type != "code":
            continue
        for call in _calls(cell.source, "show_heatmaps"):
            keywords = {k.arg for k in call.keywords}
            if not keywords & {"titles", "suptitle"}:
                problems.append(f"cell {index}: show_heatmaps(...) without titles= or suptitle=")
        for match in re.finditer(r"""cmap\s*=\s*["']([A-Za-z_]+)["']""", cell.source):
            if match.group(1) not in SAFE_CMAPS:
                problems.append(f"cell {index}: colour map {match.group(1)!r} is not colour-blind safe")
    assert not problems, f"{rel(path)}: {problems}"


@pytest.mark.slow
@pytest.mark.parametrize("nb", graded(), ids=[f"{n.assignment}/{n.filename}" for n in graded()])
def test_every_figure_a_solution_draws_is_labelled(nb, monkeypatch):
    """Run the solution in-process (as the check tests do) and inspect each figure before it is closed."""
    from harness import load, run_notebook

    seen: list[str] = []
    problems: list[str] = []
    close = plt.close

    def inspect_then_close(*args, **kwargs):
        for number in plt.get_fignums():
            fig = plt.figure(number)
            label = fig.get_suptitle() or next((a.get_title() for a in fig.axes if a.get_title()), "?")
            seen.append(label)
            problems.extend(f"figure {label!r}: {p}" for p in unlabelled(fig) + [
                f"colour map {c!r}" for c in unsafe_colour_maps(fig)])
        return close(*args, **kwargs)

    monkeypatch.setattr(plt, "close", inspect_then_close)
    run = run_notebook(load(str(nb.source.relative_to(ROOT))))
    assert not run.failed, run.checks
    assert not problems, f"{rel(nb.source)}: {problems}"
    print(f"{rel(nb.source)}: {len(seen)} figures checked: {seen}")


def test_explorer_changes_no_rcparams():
    before = dict(matplotlib.rcParams)
    explore(interactive=False)
    explore(interactive=True)
    assert dict(matplotlib.rcParams) == before
