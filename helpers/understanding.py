"""The fixed keys and values of "Understanding attention", and ``check_query``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# torch.manual_seed(447); randn(4, 3); divide each row by its norm; round to 2 decimals
# (first for KEY, then for VALUE).  Hard-coded so every machine sees the same numbers.
KEY = torch.tensor(
    [
        [0.47, 0.65, 0.60],
        [0.64, 0.50, -0.59],
        [-0.03, -0.48, -0.88],
        [0.43, -0.83, 0.35],
    ]
)
VALUE = torch.tensor(
    [
        [-0.07, -0.88, 0.47],
        [0.37, -0.93, -0.07],
        [-0.25, -0.75, 0.61],
        [0.94, 0.20, 0.28],
    ]
)


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(query @ key.T) @ value, i.e. scaled dot-product attention with ``scale=1``."""
    return F.scaled_dot_product_attention(query, key, value, scale=1)


def _explain_shapes(query: object, target: object, key: torch.Tensor, value: torch.Tensor) -> None:
    d = key.shape[-1]
    if not isinstance(query, torch.Tensor):
        raise TypeError(f"check_query: expected the query to be a torch.Tensor, got a {type(query).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"check_query: expected the target to be a torch.Tensor, got a {type(target).__name__}")
    if key.dim() != 2 or value.dim() != 2 or key.shape[0] != value.shape[0]:
        raise ValueError(
            "check_query: expected key (n_keys, d) and value (n_keys, d_v) with the same number of rows, "
            f"got key {tuple(key.shape)} and value {tuple(value.shape)}"
        )
    if query.dim() != 2:
        fix = f" Add the query axis: query.reshape(1, {d})." if query.dim() == 1 else ""
        raise ValueError(
            f"check_query: expected a 2-D query of shape (n_queries, {d}), one row per query; "
            f"got {query.dim()} axes with shape {tuple(query.shape)}.{fix}"
        )
    if query.shape[-1] != d:
        raise ValueError(
            f"check_query: expected each query to have {d} entries (the keys' length), "
            f"got shape {tuple(query.shape)}"
        )
    out_shape = (query.shape[0], value.shape[-1])
    allowed = {out_shape}
    if query.shape[0] == 1:
        allowed.add((value.shape[-1],))  # a single target row may be given as a vector
    if tuple(target.shape) not in allowed:
        raise ValueError(
            f"check_query: expected a target of shape {out_shape} (one value-sized row per query), "
            f"got {tuple(target.shape)}"
        )


def check_query(
    query: torch.Tensor,
    target: torch.Tensor,
    key: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
) -> float:
    """Compare ``attention(query, key, value)`` with ``target``.

    Prints and returns the maximum absolute element-wise difference.  ``key`` and
    ``value`` default to the course's fixed :data:`KEY` and :data:`VALUE`.  Shape
    problems are explained in words instead of failing deep inside PyTorch.
    """
    key = KEY if key is None else key
    value = VALUE if value is None else value
    _explain_shapes(query, target, key, value)
    # Compute on the query's dtype and device without touching the caller's tensors.
    key = key.to(query.device, query.dtype)
    value = value.to(query.device, query.dtype)
    output = attention(query, key, value)
    target = target.to(output.device, output.dtype)
    if target.dim() == 1:  # a single query whose target was given as a vector
        output = output.reshape(target.shape)
    error = float((target - output).abs().max())
    print(f"maximum absolute element-wise difference: {error:.3g}")
    return error
