"""Verdicts are decided outside the student's process; hostile submissions gain nothing.

Every test runs a real submission through the sandboxed runner (grading.runner) and the
trusted engine (grading.engine), on notebook 1.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest

from grading.engine import Budget, grade_notebook, scan_for_tampering
from grading.remote import Runner
from grading.sandbox import Limits, Sandbox
from harness import grade_id, load

NB = load("solutions/01_scoring_functions/scoring_functions.ipynb")
FULL = {"test_masked_softmax": 4, "test_batch_scores": 2, "test_bmm_vs_matmul": 1,
        "test_DotProductAttention": 3, "test_AdditiveAttention": 3}
WRONG_SOFTMAX = "def masked_softmax(X, valid_lens):\n    return torch.softmax(X, dim=-1)\n"


@pytest.fixture(scope="module")
def runner():
    scratch = tempfile.TemporaryDirectory(prefix="attnkit-test-")
    box = Runner(Sandbox(Path(scratch.name) / "scratch", limits=Limits(memory_bytes=2 * 1024**3)))
    holder = {"runner": box}
    yield holder
    holder["runner"].close()
    scratch.cleanup()


def grade(holder, replace: dict[str, str], budget: Budget = Budget(cell_seconds=60, notebook_seconds=120)):
    nb = copy.deepcopy(NB)
    for cell in nb.cells:
        if grade_id(cell) in replace:
            cell.source = replace[grade_id(cell)]
    result = grade_notebook(holder["runner"], nb, budget)
    if not holder["runner"].alive:  # a hung runner was killed: replace it, as the pipeline does
        holder["runner"].close()
        holder["runner"] = Runner(Sandbox(holder["runner"].sandbox.scratch))
    return result, {q.grade_id: q.score for q in result.questions if q.status != "manual"}


def test_solution_gets_full_marks(runner):
    result, scores = grade(runner, {})
    assert scores == FULL and not result.fatal and not result.tampering and not result.cell_errors


def test_blank_scores_zero(runner):
    stub = "raise NotImplementedError()"
    _, scores = grade(runner, {g: stub for g in ["masked_softmax", "batch_scores", "bmm_vs_matmul", "DotProductAttention", "AdditiveAttention"]})
    assert scores == dict.fromkeys(FULL, 0.0)


TAMPER = {
    "torch.allclose": "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True",
    "attnkit checks": "import attnkit\nattnkit.check_close = attnkit.check_masked_zero = lambda *a, **k: None\ncheck_masked_zero = lambda *a, **k: None",
    "builtins": "import builtins\nbuiltins.AssertionError = type('Never', (Exception,), {})",
    "sys.excepthook": "import sys\nsys.excepthook = lambda *a: None",
    "set_custom_exc": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)",
    "events.register": "get_ipython().events.register('post_run_cell', lambda *a, **k: None)",
    "testing": "torch.testing.assert_close = lambda *a, **k: None",
}


@pytest.mark.parametrize("name", TAMPER)
def test_monkeypatching_gains_nothing_and_is_flagged(runner, name):
    result, scores = grade(runner, {"masked_softmax": WRONG_SOFTMAX + TAMPER[name]})
    assert scores["test_masked_softmax"] == 0.0, "a wrong answer must still fail"
    assert scores["test_batch_scores"] == 2  # the others are graded as usual
    assert result.tampering, "expected the tampering to be reported"


def test_tampering_scan_ignores_ordinary_code():
    assert scan_for_tampering("x = torch.ones(3)\nself.W_q = nn.LazyLinear(4)\nmodel.weight = w") == []
    assert scan_for_tampering("torch.allclose = f") and scan_for_tampering("setattr(torch, 'equal', f)")


@pytest.mark.parametrize("crash", ["import os\nos._exit(1)", "import ctypes\nctypes.string_at(0)"], ids=["os._exit", "segfault"])
def test_kernel_death_keeps_earlier_grades(runner, crash):
    answer = "def batch_scores(queries, keys):\n    return torch.bmm(queries, keys.transpose(1, 2))\n" + crash
    result, scores = grade(runner, {"batch_scores": answer})
    assert "kernel died" in result.fatal
    assert scores["test_masked_softmax"] == 4  # ran before the crash
    later = [q for q in result.questions if q.grade_id in {"test_batch_scores", "test_DotProductAttention"}]
    assert all(q.status == "error" and q.score == 0 and "kernel died" in q.message for q in later)
    _, after = grade(runner, {})  # the next submission is graded normally
    assert after == FULL


def test_sigint_ignoring_loop_times_out(runner):
    loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    result, scores = grade(runner, {"DotProductAttention": loop}, Budget(cell_seconds=3, notebook_seconds=60))
    assert "time limit" in result.fatal
    assert scores["test_masked_softmax"] == 4 and scores["test_DotProductAttention"] == 0


def test_memory_bomb_costs_only_its_question(runner):
    bomb = WRONG_SOFTMAX.replace("return", "x = torch.ones(2**31)\n    return") + "masked_softmax(torch.ones(1, 1, 1), None)"
    result, scores = grade(runner, {"masked_softmax": bomb})
    assert scores["test_masked_softmax"] == 0
    assert scores["test_batch_scores"] == 2
    assert any("memory" in e.lower() for e in result.cell_errors), result.cell_errors
