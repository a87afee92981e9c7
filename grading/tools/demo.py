"""``make demo``: the main job, end to end.

1. build the student notebooks from the solutions (nbgrader generate_assignment);
2. execute every solution notebook headlessly (all checks, hidden tests included, must pass);
3. generate a small synthetic class from the released notebooks and the solutions (under
   ``demo-output/``, git-ignored): complete, blank, partially correct, Colab .ipynb, Colab .py,
   stripped metadata, a duplicated cell, a kernel crash, an invalid file;
4. autograde it (``python -m grading autograde demo-output/submitted --out demo-output/graded
   --db demo-output/graded/gradebook.db``), print the per-student table and where the feedback is,
   and check that every synthetic student got what its kind must get.
"""

from __future__ import annotations

import shutil
import sys
import time

from grading import course
from grading.authoring.execute import execute_solutions
from grading.authoring.release import release
from grading.course import notebooks
from grading.reporting.table import print_table


def _rel(path) -> str:
    root = course.root()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def grade_synthetic_class(workers: int | None = None) -> int:
    """Steps 3 and 4; returns 0 when every synthetic student got what its kind must get."""
    from grading.pipeline import autograde_class
    from grading.tools import synthetic

    demo_dir = course.root() / "demo-output"
    submitted, graded = demo_dir / "submitted", demo_dir / "graded"
    for folder in (submitted, graded):
        shutil.rmtree(folder, ignore_errors=True)
    students = synthetic.make_class(submitted, synthetic.DEMO_KINDS)
    n_files = sum(1 for p in submitted.rglob("*") if p.is_file())
    print(f"   {len(students)} students x {len(notebooks())} notebook(s) = {n_files} files in {_rel(submitted)}/")
    print(f"   kinds: {', '.join(students.values())}")
    print("== 4. Autograde the class: python -m grading autograde demo-output/submitted --out demo-output/graded")
    sys.stdout.flush()
    from grading.execution.sandbox import SandboxUnavailable, check_available
    from grading.options import GradeOptions

    options = GradeOptions()
    try:
        check_available()
        print("   in the bubblewrap sandbox, verdicts decided outside the students' processes")
    except SandboxUnavailable as exc:
        # These submissions are our own synthetic ones, so the demo may run them unconfined;
        # `python -m grading autograde` on real submissions refuses to.
        print(f"   NOTE: no sandbox here ({exc})\n   the demo grades its own synthetic class without one")
        options = GradeOptions(sandbox=False)
    summary = autograde_class(submitted, graded, workers=workers, db=graded / "gradebook.db", options=options, resume=False)
    print()
    print("autograded score / max per notebook ('+2m': points of written answers awaiting a human;")
    print("'err': some questions could not be graded, 'ERR': the file could not be read; see the report)")
    print_table(summary.results)
    print()
    print(f"   {summary.line()}")
    print(f"   grades:    {_rel(graded / 'grades.csv')}")
    print(f"   feedback:  {_rel(graded / 'feedback')}/<student>/<assignment>/<notebook>.html")
    print(f"   report:    {_rel(graded / 'report')}")
    print(f"   gradebook: {_rel(graded / 'gradebook.db')} (formgrader: cd {_rel(graded)} && jupyter lab)")
    timed = [r.timings["total"] for r in summary.results if "total" in r.timings and r.timings.get("run")]
    if timed:
        print(f"   time per executed submission: mean {sum(timed) / len(timed):.1f}s, max {max(timed):.1f}s "
              f"(kernel start {sum(r.timings['start'] for r in summary.results if r.timings.get('run')) / len(timed):.1f}s on average)")
    problems = []
    for r in summary.results:
        why = synthetic.unexpected(students[r.student_id], r)
        if why:
            problems.append(f"{r.student_id}/{r.notebook}: {why}")
    if summary.changed_files:
        problems.append(f"submitted files changed: {summary.changed_files}")
    for p in problems:
        print(f"   UNEXPECTED: {p}")
    if not problems:
        print("   every synthetic student got what its kind must get")
    return 1 if problems else 0


def main() -> int:
    start = time.perf_counter()
    print("== 1. Student notebooks: generated from solutions/ by nbgrader")
    for path in release():
        print(f"   {_rel(path)}")
    print("== 2. Solution notebooks: executed headlessly")
    status = execute_solutions()
    print("== 3. A synthetic class, generated from the released notebooks and the solutions")
    status |= grade_synthetic_class()
    print(f"== demo finished in {time.perf_counter() - start:.1f}s ({'ok' if status == 0 else 'with failures'})")
    return status
