"""How much memory a call needs: for checks of *how* an answer computes, not what it returns."""

from __future__ import annotations

import tracemalloc
import weakref

import torch


def peak_memory(fn, *args, **kwargs) -> tuple[object, int]:
    """Call ``fn(*args, **kwargs)`` without gradients; return ``(result, peak bytes it needed beyond the start)``.

    In a notebook it adds up the tensors PyTorch's operators create (alive at the same time) and
    what Python and NumPy allocate (``tracemalloc``). When the grader runs the student's code in
    its sandbox, ``fn`` is a stand-in and the peak is the submission process's resident memory,
    measured from outside it, so every allocation counts; a call it cannot measure fails the check.
    """
    remote = getattr(fn, "__remote_call__", None)
    if remote is not None:
        return remote(*args, **kwargs)
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    state = {"live": {}, "current": 0, "peak": 0}

    def release(key):
        entry = state["live"].get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                state["current"] -= entry[1]
                del state["live"][key]

    class Live(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                    continue
                key = t.untyped_storage().data_ptr()
                if key in state["live"]:
                    state["live"][key][0] += 1
                elif key not in inputs:
                    state["live"][key] = [1, t.untyped_storage().nbytes()]
                    state["current"] += state["live"][key][1]
                    state["peak"] = max(state["peak"], state["current"])
                weakref.finalize(t, release, key)
            return out

    with Live():  # the first dispatch imports PyTorch's tracing machinery: not the answer's memory
        torch.ones(1).add(1)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    try:
        with torch.no_grad(), Live():
            result = fn(*args, **kwargs)
        python_peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        if not tracing:
            tracemalloc.stop()
    return result, max(state["peak"], python_peak)
