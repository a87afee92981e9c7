"""Property checks used by the notebooks' grade cells.

Every check raises ``AssertionError`` with a message of the form
"<what>: expected ..., got ..." that explains the failure in words.  Messages
describe *properties* of the student's tensor (its shape, its largest error);
they never print a reference answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

ShapeLike = Sequence[int]


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


def _require_tensor(x: object, name: str) -> torch.Tensor:
    if x is None:
        raise AssertionError(f"{name}: expected a tensor, got None (did the function forget to `return`?)")
    if not isinstance(x, torch.Tensor):
        raise AssertionError(f"{name}: expected a torch.Tensor, got {_describe(x)}")
    return x


def check_shape(x: object, expected: ShapeLike, name: str = "output") -> None:
    """Assert that ``x`` is a tensor of exactly the ``expected`` shape."""
    t = _require_tensor(x, name)
    expected = tuple(int(s) for s in expected)
    if tuple(t.shape) != expected:
        hint = ""
        if sorted(t.shape) == sorted(expected):
            hint = " (same sizes in another order: is an axis transposed?)"
        elif t.dim() != len(expected):
            hint = f" ({t.dim()} axes instead of {len(expected)})"
        raise AssertionError(f"{name}: expected shape {expected}, got {tuple(t.shape)}{hint}")


def check_finite(x: object, name: str = "output") -> None:
    """Assert that ``x`` contains no NaN and no infinity."""
    t = _require_tensor(x, name)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(bad.sum()) - n_nan
        raise AssertionError(
            f"{name}: expected only finite numbers, got {n_nan} NaN and {n_inf} infinite entries "
            f"(a row with every key masked, or an overflow in a low-precision dtype?)"
        )


def check_rows_sum_to_one(weights: object, atol: float = 1e-5, name: str = "attention weights") -> None:
    """Assert that every row (last axis) of ``weights`` is a probability distribution.

    Rows that are entirely zero are allowed: that is what a valid length of 0 may give.
    """
    w = _require_tensor(weights, name)
    check_finite(w, name)
    w64 = w.detach().to("cpu", torch.float64)
    if bool((w64 < -atol).any()):
        raise AssertionError(f"{name}: expected non-negative weights, got a minimum of {w64.min().item():.3g}")
    sums = w64.sum(dim=-1)
    ok = ((sums - 1).abs() <= atol) | (sums.abs() <= atol)
    if not bool(ok.all()):
        worst = (sums - 1).abs()[~ok].max().item()
        raise AssertionError(
            f"{name}: expected every row to sum to 1, got {int((~ok).sum())} row(s) off by up to {worst:.3g}"
        )


def valid_mask(shape: ShapeLike, valid_lens: torch.Tensor | None) -> torch.Tensor:
    """Boolean mask of shape ``shape`` (batch, queries, keys): True where a key is valid.

    ``valid_lens`` is None (everything valid), 1-D ``(batch,)`` or 2-D ``(batch, queries)``.
    """
    batch, n_queries, n_keys = (int(s) for s in shape)
    if valid_lens is None:
        return torch.ones(batch, n_queries, n_keys, dtype=torch.bool)
    lens = valid_lens.detach().to("cpu")
    if lens.dim() == 1:
        lens = lens[:, None].expand(batch, n_queries)
    positions = torch.arange(n_keys)
    return positions[None, None, :] < lens[:, :, None]


def check_masked_zero(weights: object, valid_lens: torch.Tensor | None, name: str = "attention weights") -> None:
    """Assert that every weight beyond its row's valid length is exactly zero."""
    w = _require_tensor(weights, name)
    if w.dim() != 3:
        raise AssertionError(f"{name}: expected 3 axes (batch, queries, keys), got {w.dim()}")
    mask = valid_mask(w.shape, valid_lens)
    leaked = w.detach().to("cpu")[~mask]
    nonzero = int((leaked != 0).sum())
    if nonzero:
        raise AssertionError(
            f"{name}: expected exactly 0 beyond each valid length, got {nonzero} masked position(s) "
            f"with weight up to {leaked.abs().max().item():.3g}"
        )


def snapshot(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Copy tensors so that :func:`check_unchanged` can later prove they were not modified."""
    return [t.detach().clone() for t in tensors]


def check_unchanged(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor], name: str = "input") -> None:
    """Assert that each tensor in ``after`` still equals its copy in ``before``."""
    for i, (old, new) in enumerate(zip(before, after)):
        label = name if len(before) == 1 else f"{name} #{i}"
        same = old.shape == new.shape and bool(torch.equal(old, new.detach()))
        if not same:
            raise AssertionError(
                f"{label}: expected the function to leave its input unchanged, got a modified input "
                f"(work on a copy, or use out-of-place operations such as masked_fill instead of masked_fill_)"
            )


def check_device_dtype(x: object, like: torch.Tensor, name: str = "output") -> None:
    """Assert that ``x`` lives on the same device and has the same dtype as ``like``."""
    t = _require_tensor(x, name)
    if t.device != like.device:
        raise AssertionError(f"{name}: expected device {like.device}, got {t.device} (avoid hard-coded devices)")
    if t.dtype != like.dtype:
        raise AssertionError(f"{name}: expected dtype {like.dtype}, got {t.dtype} (avoid hard-coded dtypes)")


def check_close(
    actual: object,
    expected: torch.Tensor,
    name: str = "output",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Assert that ``actual`` matches ``expected`` element-wise, without revealing ``expected``.

    The message reports the shape problem or the largest deviation, never the expected values.
    """
    t = _require_tensor(actual, name)
    check_shape(t, expected.shape, name)
    check_finite(t, name)
    a = t.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    diff = (a - e).abs()
    bad = diff > atol + rtol * e.abs()
    if bool(bad.any()):
        # Only the order of magnitude of the largest error: an exact figure would reveal the
        # reference values when the answer is all zeros.
        order = math.floor(math.log10(diff.max().item())) if diff.max().item() > 0 else 0
        raise AssertionError(
            f"{name}: expected values within {atol:g} (+{rtol:g} relative) of the correct result, "
            f"got {int(bad.sum())} of {bad.numel()} entries off, the largest by about 1e{order}"
        )
