"""The test suite mirrors the project: tests/grading/<stage>/, tests/helpers/ (attnkit), tests/notebooks/
(what the notebooks teach and check), tests/colab/ (Colab's versions and habits).  Shared plumbing sits
here at the top: harness.py (a notebook in-process with answers swapped), notebook_inventory.py,
colab_twin.py, real_browser.py.  pytest puts this folder on sys.path, so those import by name."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# The wrong and alternative answers live with each notebook's tests; the grader's tests use them too.
sys.path.insert(0, str(Path(__file__).parent / "notebooks"))

# Whole-class and real-browser tests: `make test` runs them, `make test-fast` (-m "not e2e") skips them.
E2E_FILES = {"test_attacks.py", "test_agreement.py", "test_course_and_cli.py", "test_browser.py", "test_scale.py", "test_bench.py", "test_colab_twin.py",
             "test_formgrader_browser.py", "test_colab_habits.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in E2E_FILES:
            item.add_marker(pytest.mark.e2e)
