"""Property checks used by the notebooks' grade cells.

Every check raises ``AssertionError`` with a message of the form
"<what>: expected ..., got ..." that explains the failure in words.  Messages
describe *properties* of the student's tensor (its shape, its largest error);
they never print a reference answer.

Check cells group their checks into named properties with :func:`prop`::

    with attnkit.prop("masked_softmax, float16 scores", answer="masked_softmax"):
        check_finite(masked_softmax(X.half(), lens), "masked_softmax(X.half(), valid_lens)")

A failure then names the property and the case; an untouched stub says "not answered yet"; a
raw PyTorch error (a float16 overflow, shapes that do not broadcast) is explained in words.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
        hint = "(a row with every key masked, or an overflow in a low-precision dtype?)"
        if t.dtype in (torch.float16, torch.bfloat16):
            hint = (f"(in {str(t.dtype).replace('torch.', '')} a fill value such as -1e6 becomes -inf, and a row with "
                    "every key masked then gives NaN: fill with torch.finfo(X.dtype).min)")
        raise AssertionError(f"{name}: expected only finite numbers, got {n_nan} NaN and {n_inf} infinite entries {hint}")


def check_rows_sum_to_one(weights: object, atol: float = 1e-5, name: str = "attention weights") -> None:
    """Assert that every row (last axis) of ``weights`` is a probability distribution.

    Rows that are entirely zero are allowed: that is what a valid length of 0 may give.
    When the columns (the queries axis) sum to 1 instead, the message says so: softmax
    was taken over the wrong axis.
    """
    w = _require_tensor(weights, name)
    check_finite(w, name)
    w64 = w.detach().to("cpu", torch.float64)
    if bool((w64 < -atol).any()):
        raise AssertionError(f"{name}: expected non-negative weights, got a minimum of {w64.min().item():.3g}")
    sums = w64.sum(dim=-1)
    if sums.numel() and bool((sums.abs() <= atol).all()):
        raise AssertionError(f"{name}: expected rows that sum to 1, got only rows of zeros")
    ok = ((sums - 1).abs() <= atol) | (sums.abs() <= atol)
    if not bool(ok.all()):
        worst = (sums - 1).abs()[~ok].max().item()
        hint = ""
        columns = w64.sum(dim=-2) if w64.dim() >= 2 else None
        if columns is not None and bool((((columns - 1).abs() <= atol) | (columns.abs() <= atol)).all()):
            hint = " (the columns sum to 1 instead: softmax over the queries axis? Take it over the keys, dim=-1)"
        raise AssertionError(
            f"{name}: expected every row to sum to 1, got {int((~ok).sum())} row(s) off by up to {worst:.3g}{hint}"
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
    """Assert that every weight beyond its row's valid length is exactly zero.

    When the zeros follow the valid lengths read along the wrong axis (a 1-D ``valid_lens`` of
    shape (batch,) lined up with the queries instead of the examples), the message says so.
    """
    w = _require_tensor(weights, name)
    if w.dim() != 3:
        raise AssertionError(f"{name}: expected 3 axes (batch, queries, keys), got {w.dim()}")
    mask = valid_mask(w.shape, valid_lens)
    cpu = w.detach().to("cpu")
    leaked = cpu[~mask]
    nonzero = int((leaked != 0).sum())
    if nonzero:
        hint = ""
        if valid_lens is not None and valid_lens.dim() == 1 and w.shape[0] == w.shape[1]:
            lens = valid_lens.detach().to("cpu")
            wrong_axis = torch.arange(w.shape[-1])[None, None, :] < lens[None, :, None]  # lengths per query
            if bool((cpu[~wrong_axis.expand_as(cpu)] == 0).all()):
                hint = (" (the zeros follow the valid lengths along the queries axis: a (batch,) valid_lens needs "
                        "a mask of shape (batch, 1, keys), not (batch, keys))")
        raise AssertionError(
            f"{name}: expected exactly 0 beyond each valid length, got {nonzero} masked position(s) "
            f"with weight up to {leaked.abs().max().item():.3g}{hint}"
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


def check_attribute(obj: object, attribute: str, name: str) -> object:
    """Return ``obj.<attribute>``; if it is missing, fail with a message that names it.

    ``name`` is how the message calls the object, e.g. ``"DotProductAttention"``.
    """
    value = getattr(obj, attribute, None)
    if value is None:
        raise AssertionError(
            f"{name}.{attribute}: expected forward() to store the attention weights in self.{attribute}, "
            f"got no such attribute (assign self.{attribute} = ... inside forward, before dropout)"
        )
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _words_for(exc: BaseException) -> str:
    """A failure of the student's code, explained in words where the cause is a common one."""
    text = str(exc)
    overflow = re.search(r"value cannot be converted to type (?:c10::)?(\w+) without overflow", text)
    if overflow:
        dtype = {"Half": "float16", "BFloat16": "bfloat16", "float": "float32"}.get(overflow.group(1), overflow.group(1))
        return (f"expected a result, got an overflow: a constant does not fit in {dtype} (float16 holds numbers "
                f"up to 65504, so -1e6 does not fit). Use torch.finfo(X.dtype).min instead of a fixed number")
    if "must match the size of tensor" in text or "cannot be broadcast" in text:
        return (f"expected a result, got shapes that do not broadcast ({_first_line(exc)}). A 1-D valid_lens of "
                f"shape (batch,) needs a mask of shape (batch, 1, keys): add the query axis")
    if isinstance(exc, NotImplementedError):
        # (an exception raised in the grader's sandbox arrives with the grader's own traceback: no stub to name)
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ and not hasattr(exc, "student_type") else []
        where = frames[-1].name if frames and frames[-1].name not in ("<module>", "__init__", "forward") else None
        if where:  # in the student's notebook the traceback names the stub: perhaps another answer this one calls
            return (f"not answered yet: `{where}` still raises NotImplementedError (replace it with your code; "
                    "if it is another TODO that this answer calls, finish that one first)")
        return ("not answered yet: NotImplementedError (this answer, or another TODO it calls, still raises it: "
                "replace it with your code)")
    return f"expected a result, got {type(exc).__name__}: {_first_line(exc)}"


_STATE = threading.local()  # the grader's recording, per thread (a Dask worker grades in threads)


@dataclass
class Outcome:
    """How one property of a check cell came out (recorded for partial credit by the grader)."""

    name: str
    passed: bool
    error: BaseException | None = None  # what the student would have seen (words)
    cause: BaseException | None = None  # the exception raised inside the block, as it was


@contextlib.contextmanager
def recording() -> Iterator[list[Outcome]]:
    """Record every :func:`prop` in the block instead of stopping at the first failure (the grader's mode).

    The grader gives a question's points property by property: each ``prop`` of its check cell
    (visible and hidden) counts equally. A student running the notebook never sees this mode.
    """
    saved = getattr(_STATE, "recording", None)
    _STATE.recording = []
    try:
        yield _STATE.recording
    finally:
        _STATE.recording = saved


def _failure(name: str, answer: str | None, exc: BaseException) -> BaseException | None:
    """The exception a failing property raises, in words; None for errors that must pass through."""
    if isinstance(exc, AssertionError):
        return AssertionError(f"{name}: {exc}")
    if isinstance(exc, NotImplementedError):
        return exc if "not answered yet" in str(exc) else NotImplementedError(f"{name}: {_words_for(exc)}")
    if isinstance(exc, NameError):
        missing = getattr(exc, "name", None) or (re.findall(r"name '(\w+)'", str(exc)) or [None])[0]
        if answer is not None and missing == answer:
            return NotImplementedError(
                f"{name}: not answered yet: `{answer}` is not defined (write it in the answer cell, delete "
                f"`raise NotImplementedError()` and run that cell)"
            )
        return AssertionError(f"{name}: expected a result, got NameError: {_first_line(exc)}")
    if isinstance(exc, Exception) and type(exc).__module__.split(".")[0] != "grading":
        return AssertionError(f"{name}: {_words_for(exc)}")
    return None  # the grading machinery's own errors, KeyboardInterrupt, SystemExit


@contextlib.contextmanager
def prop(name: str, answer: str | None = None) -> Iterator[None]:
    """One named property of an answer, checked in the ``with`` block, failing with a message in words.

    * An ``AssertionError`` from a check keeps its message, prefixed with ``name``.
    * An unanswered stub (``NotImplementedError``, or a ``NameError`` for ``answer``, the variable the
      question asks for) fails with "not answered yet" as a ``NotImplementedError``.
    * Any other error of the student's code (a float16 overflow, shapes that do not broadcast, a
      missing attribute) fails as an ``AssertionError`` that says what went wrong in words.

    Errors of the grading machinery itself (``grading.*``) pass through unchanged.  When the grader
    records (:func:`recording`), a failure is noted and the cell goes on to its next property.
    """
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - the student's code may raise anything
        failure = _failure(name, answer, exc)
        if failure is None:
            raise
        recording = getattr(_STATE, "recording", None)
        if recording is not None:
            recording.append(Outcome(name, False, failure, exc))
            return
        raise failure from None
    recording = getattr(_STATE, "recording", None)
    if recording is not None:
        recording.append(Outcome(name, True))


def check_two_key_weights(
    weights: object,
    expected_gap: float,
    name: str = "attention weights",
    hints: dict[float, str] | None = None,
    atol: float = 0.02,
) -> None:
    """Check a hand-computed example: one query, two keys, whose scores differ by ``expected_gap``.

    ``weights`` holds the two weights (any shape with 2 entries).  The message reports the weights
    and the score gap ``log(w0 / w1)`` they imply; ``hints`` maps a gap that a typical mistake gives
    (e.g. 4.0 for a missing 1/sqrt(d)) to a sentence naming that mistake.  The expected weights are
    stated in the check cell's comment, so printing them reveals nothing new.
    """
    w = _require_tensor(weights, name).detach().to("cpu", torch.float64).reshape(-1)
    if w.numel() != 2:
        raise AssertionError(f"{name}: expected 2 weights (one query, two keys), got {w.numel()}")
    w0_expected = 1.0 / (1.0 + math.exp(-expected_gap))
    w0, w1 = float(w[0]), float(w[1])
    if abs(w0 - w0_expected) <= 1e-3 and abs(w1 - (1 - w0_expected)) <= 1e-3:
        return
    gap = math.log(w0 / w1) if w0 > 0 and w1 > 0 else float("nan")
    hint = ""
    for bad_gap, text in (hints or {}).items():
        if math.isfinite(gap) and abs(gap - bad_gap) <= atol * max(1.0, abs(bad_gap)):
            hint = f": {text}"
    raise AssertionError(
        f"{name}: expected weights {w0_expected:.3f} and {1 - w0_expected:.3f} (scores that differ by "
        f"{expected_gap:g}), got {w0:.3f} and {w1:.3f} (scores that differ by {gap:.3g}){hint}"
    )
