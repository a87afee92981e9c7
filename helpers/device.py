"""One-call notebook set-up: pick the device once and seed every generator."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device() -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU.

    Set the environment variable ``ATTNKIT_DEVICE`` (e.g. ``cpu``) to override.
    """
    forced = os.environ.get("ATTNKIT_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup(seed: int = 0, verbose: bool = True) -> torch.device:
    """Seed Python, NumPy and PyTorch, choose the device and report it.

    Call it once at the top of a notebook and pass the returned device to
    every tensor you create (``torch.zeros(3, device=device)``) instead of
    writing ``.cuda()``: the same code then runs on a laptop and on a GPU.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    device = get_device()
    if verbose:
        print(f"torch {torch.__version__} | device: {device} | seed: {seed}")
    return device
