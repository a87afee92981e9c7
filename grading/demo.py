"""``make demo``: build the student notebooks, run every solution notebook, report."""

from __future__ import annotations

import time

from grading.course import ROOT, notebooks
from grading.execute import execute_notebook
from grading.release import release


def execute_solutions() -> int:
    """Execute each solution notebook in a fresh kernel and print one line per notebook."""
    failures = 0
    print(f"{'notebook':<55} {'time':>7}  checks")
    for nb in notebooks():
        _, result = execute_notebook(nb.source)
        status = "ok" if result.ok else "FAILED"
        print(
            f"{str(nb.source.relative_to(ROOT)):<55} {result.seconds:>6.1f}s  "
            f"{result.checks_passed}/{result.checks_total} passed  {status}"
        )
        if not result.ok:
            failures += 1
            for check in result.failed_checks:
                print(f"    failed check: {check}")
            if result.error:
                print(f"    error: {result.error}")
    return 1 if failures else 0


def main() -> int:
    start = time.perf_counter()
    print("== 1. Student notebooks: generated from solutions/ by nbgrader")
    for path in release():
        print(f"   {path.relative_to(ROOT)}")
    print("== 2. Solution notebooks: executed headlessly")
    status = execute_solutions()
    print(f"== demo finished in {time.perf_counter() - start:.1f}s ({'ok' if status == 0 else 'with failures'})")
    return status
