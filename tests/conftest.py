"""The test suite mirrors the project: tests/grading/<stage>/, tests/helpers/ (attnkit), tests/notebooks/
(what the notebooks teach and check), tests/colab/ (Colab's versions and habits).  Shared plumbing sits
here at the top: harness.py (a notebook in-process with answers swapped), notebook_inventory.py,
colab_twin.py, real_browser.py.  pytest puts this folder on sys.path, so those import by name."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# The wrong and alternative answers live with each notebook's tests; the grader's tests use them too.
sys.path.insert(0, str(Path(__file__).parent / "notebooks"))

# Whole-class and real-browser tests: `make test` runs them, `make test-fast` (-m "not e2e") skips them.
E2E_FILES = {"test_attacks.py", "test_agreement.py", "test_course_and_cli.py", "test_browser.py", "test_scale.py", "test_bench.py", "test_colab_twin.py",
             "test_formgrader_browser.py", "test_colab_habits.py"}


# `make test` runs `--dist loadscope`: each module stays in one test process, so an expensive module-scoped
# fixture (a class graded, every wrong answer run) is built once.  Rough seconds of the slowest modules: they
# start first (`--no-loadscope-reorder` keeps this order), so that none of them is left for the end.
SLOW = {"test_agreement.py": 300, "test_attacks.py": 130, "test_scale.py": 80, "test_autograde_instructor.py": 80,
        "test_bench.py": 80, "test_visible_catch.py": 60, "test_autograde.py": 60, "test_colab_twin.py": 60,
        "test_course_and_cli.py": 50, "test_browser.py": 45, "test_colab_habits.py": 40, "test_formgrader_browser.py": 40,
        "test_trusted_grading.py": 40, "test_sandbox.py": 30}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in E2E_FILES:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: -SLOW.get(Path(str(item.fspath)).name, 0))  # stable: each module keeps its order


def pytest_configure(config):
    """One folder per session for harness.verdicts, made before the test processes start (they inherit it)."""
    if "ATTNKIT_VERDICTS" not in os.environ:
        os.environ["ATTNKIT_VERDICTS"] = tempfile.mkdtemp(prefix="attnkit-verdicts-")
        config._attnkit_verdicts = os.environ["ATTNKIT_VERDICTS"]


def pytest_unconfigure(config):
    folder = getattr(config, "_attnkit_verdicts", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("ATTNKIT_VERDICTS", None)
