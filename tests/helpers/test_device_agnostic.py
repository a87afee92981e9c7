"""Nothing assumes a CPU (or a GPU): no `.cuda()`, no hard-coded CPU device in student-facing code.

Moving a tensor *to the host* (``.cpu()``, ``.to("cpu", ...)``) for a comparison or a plot is fine on
any device; creating tensors on a fixed device is not.  The one place that names the CPU is
``attnkit.setup.get_device``, the fallback when no accelerator is present.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from notebook_inventory import ROOT, every_notebook, read, rel

HELPERS = sorted((ROOT / "helpers").glob("*.py"))
CUDA_CALL = re.compile(r"\.cuda\s*\(")
FIXED_CPU = re.compile(r"""device\s*=\s*["']cpu["']|torch\.device\(\s*["']cpu["']\s*\)""")
ALLOWED_FIXED_CPU = {ROOT / "helpers" / "device.py"}  # get_device()'s last resort
_python = TransformerManager().transform_cell


def _code_lines(text: str):
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]  # comments and docstrings may talk about .cuda()
        if code.strip():
            yield number, code


def _offences(text: str, allow_fixed_cpu: bool = False) -> list[str]:
    found = []
    in_docstring = False
    for number, code in _code_lines(text):
        if code.count('"""') % 2:
            in_docstring = not in_docstring
            continue
        if in_docstring:
            continue
        if CUDA_CALL.search(code):
            found.append(f"line {number}: {code.strip()} (use .to(device) with device = attnkit.setup())")
        if not allow_fixed_cpu and FIXED_CPU.search(code):
            found.append(f"line {number}: {code.strip()} (use the device from attnkit.setup())")
    return found


@pytest.mark.parametrize("path", HELPERS, ids=[p.name for p in HELPERS])
def test_helpers_hard_code_no_device(path: Path):
    problems = _offences(path.read_text(), allow_fixed_cpu=path in ALLOWED_FIXED_CPU)
    assert not problems, f"{rel(path)}: {problems}"


NOTEBOOKS = every_notebook()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[rel(p) for p in NOTEBOOKS])
def test_notebooks_hard_code_no_device(path: Path):
    problems = []
    for index, cell in enumerate(read(path).cells):
        if cell.cell_type == "code":
            problems += [f"cell {index}, {p}" for p in _offences(_python(cell.source))]
    assert not problems, f"{rel(path)}: {problems}"


def test_setup_picks_cuda_when_present(monkeypatch):
    import torch

    import attnkit

    monkeypatch.delenv("ATTNKIT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert attnkit.get_device().type == "cuda"


def test_the_rule_catches_what_it_should():
    assert _offences("x = torch.zeros(3).cuda()\n")
    assert _offences("x = torch.zeros(3, device='cpu')\n")
    assert _offences("d = torch.device('cpu')\n")
    assert not _offences("x = y.detach().to('cpu', torch.float64)  # compare on the host\n")
    assert not _offences("x = y.cpu().numpy()\nif device.type == 'cuda':\n    torch.cuda.synchronize()\n")
    assert not _offences("# never write .cuda() here\n")
