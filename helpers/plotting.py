"""Heatmaps of attention weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover - only for type checkers
    from matplotlib.figure import Figure


def _to_numpy(matrices: object) -> np.ndarray:
    if isinstance(matrices, torch.Tensor):
        # detach() for tensors that require grad, cpu() for GPU tensors.
        return matrices.detach().to("cpu", torch.float32).numpy()
    return np.asarray(matrices, dtype=np.float32)


def _as_grid(array: np.ndarray) -> np.ndarray:
    """Bring 2-D (q, k), 3-D (n, q, k) or 4-D (rows, cols, q, k) input to 4-D."""
    if array.ndim == 2:
        return array[None, None]
    if array.ndim == 3:
        return array[None]
    if array.ndim == 4:
        return array
    raise ValueError(
        "show_heatmaps: expected a 2-D (queries, keys), 3-D (panels, queries, keys) or "
        f"4-D (rows, cols, queries, keys) array, got {array.ndim} axes with shape {array.shape}"
    )


def show_heatmaps(
    matrices: object,
    xlabel: str = "Keys",
    ylabel: str = "Queries",
    titles: Sequence[str] | None = None,
    figsize: tuple[float, float] = (3.5, 3.0),
    cmap: str = "Reds",
    suptitle: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """Draw attention weights as a grid of heatmaps and return the Figure.

    ``matrices`` may be a CPU or GPU tensor (gradients allowed) or an array, of shape
    (queries, keys), (panels, queries, keys) or d2l's (rows, cols, queries, keys).
    All panels share one colour scale (``vmin``..``vmax``, by default the data's range)
    and one colour bar.  Rows and columns get one integer tick each (up to 20 of them).  ``titles`` names the columns.  Nothing global is changed:
    no rcParams, no default colour map.

    In a notebook end the call with ``;`` (or assign the result) so that the
    figure is shown once.
    """
    import matplotlib.pyplot as plt  # imported here: importing attnkit touches no matplotlib state

    grid = _as_grid(_to_numpy(matrices))
    rows, cols = grid.shape[:2]
    if titles is not None and len(titles) != cols:
        raise ValueError(f"show_heatmaps: expected {cols} titles (one per column), got {len(titles)}")
    lo = float(np.nanmin(grid)) if vmin is None else vmin
    hi = float(np.nanmax(grid)) if vmax is None else vmax
    if hi <= lo:  # a constant matrix still needs a non-empty range
        hi = lo + 1.0
    fig, axes = plt.subplots(
        rows, cols, figsize=(figsize[0] * cols, figsize[1] * rows), sharex=True, sharey=True, squeeze=False
    )
    image = None
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            image = ax.imshow(grid[i, j], cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            # Integer ticks, one per row and column, for the small matrices of a course (not -0.5, 0.5, ...).
            n_rows, n_cols = grid.shape[2:]
            if n_cols <= 20:
                ax.set_xticks(range(n_cols))
            if n_rows <= 20:
                ax.set_yticks(range(n_rows))
            if i == rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None and i == 0:
                ax.set_title(titles[j])
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
    if suptitle:
        fig.suptitle(suptitle)
    return fig
