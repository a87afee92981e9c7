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


# Modules whose tests share an expensive module-scoped fixture (a class graded, every wrong answer run):
# their tests stay in one test process (`--dist loadgroup`), one group per parameter of that fixture, so the
# fixture is built once.  Rough seconds of each group: the slowest start first.
SHARED = {"test_agreement.py": ("agreement", 120), "test_attacks.py": ("attacked", 60), "test_visible_catch.py": (None, 60),
          "test_autograde.py": (None, 60), "test_colab_habits.py": (None, 40), "test_autograde_instructor.py": (None, 80),
          "test_scale.py": (None, 80), "test_formgrader_browser.py": (None, 40), "test_course_and_cli.py": (None, 50),
          "test_browser.py": (None, 45), "test_colab_twin.py": (None, 60), "test_claims.py": (None, 10),
          "test_notebook01.py": (None, 20), "test_notebook02.py": (None, 20), "test_notebook03.py": (None, 20),
          "test_oracle_d2l.py": (None, 5), "test_trusted_grading.py": (None, 40), "test_sandbox.py": (None, 30)}
SLOW = {"test_bench.py": 80}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    weight = {}
    for item in items:
        name = Path(str(item.fspath)).name
        if name in E2E_FILES:
            item.add_marker(pytest.mark.e2e)
        if name in SHARED:
            fixture, seconds = SHARED[name]
            params = getattr(getattr(item, "callspec", None), "params", {})
            group = name + (f"[{params[fixture]}]" if fixture in params else "")
            item.add_marker(pytest.mark.xdist_group(group))
            weight[item.nodeid] = seconds
        else:
            weight[item.nodeid] = SLOW.get(name, 0)
    items.sort(key=lambda item: -weight[item.nodeid])  # stable: each module keeps its order


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
