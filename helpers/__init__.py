"""Helpers for the attention course notebooks (imported as ``attnkit``).

Everything here is safe for students to read: plotting, set-up, and checks that
test *properties* of an answer (shapes, rows summing to one, masked entries being
zero, inputs left untouched).  No helper contains a solution, and no helper
modifies its inputs.
"""

from attnkit.checks import (
    check_attribute,
    check_close,
    check_device_dtype,
    check_finite,
    check_masked_zero,
    check_rows_sum_to_one,
    check_shape,
    check_two_key_weights,
    check_unchanged,
    prop,
    snapshot,
)
from attnkit.device import get_device, setup
from attnkit.memory import peak_memory
from attnkit.plotting import show_heatmaps
from attnkit.understanding import KEY, VALUE, attention, check_query

__all__ = [
    "KEY",
    "VALUE",
    "attention",
    "check_attribute",
    "check_close",
    "check_device_dtype",
    "check_finite",
    "check_masked_zero",
    "check_query",
    "check_rows_sum_to_one",
    "check_shape",
    "check_two_key_weights",
    "check_unchanged",
    "explore",
    "get_device",
    "peak_memory",
    "prop",
    "selection_vs_averaging",
    "setup",
    "show_heatmaps",
    "snapshot",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``attnkit.explorer`` (and its ``explore``, ``selection_vs_averaging``) loads matplotlib's figure
    machinery on first use, not on ``import attnkit``: the grader imports the checks only."""
    if name in ("explorer", "explore", "selection_vs_averaging"):
        import importlib

        explorer = importlib.import_module("attnkit.explorer")  # which also sets attnkit.explorer
        return explorer if name == "explorer" else getattr(explorer, name)
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
