import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# Whole-class and real-browser tests: `make test` runs them, `make test-fast` (-m "not e2e") skips them.
E2E_FILES = {"test_attacks.py", "test_agreement.py", "test_course_and_cli.py", "test_browser.py", "test_scale.py", "test_bench.py", "test_colab_twin.py",
             "test_formgrader_browser.py", "test_colab_habits.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).name in E2E_FILES:
            item.add_marker(pytest.mark.e2e)
