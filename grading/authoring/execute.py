"""Execute notebooks headlessly with nbclient and summarise what ran."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbgrader import utils as nbutils

from grading import course


@dataclass
class RunResult:
    path: Path
    seconds: float
    checks_passed: int = 0
    checks_total: int = 0
    error: str | None = None
    failed_checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.checks_passed == self.checks_total


def execute_notebook(path: Path, timeout: int = 600, env: dict[str, str] | None = None) -> tuple[nbformat.NotebookNode, RunResult]:
    """Run every cell of ``path`` in a fresh kernel (working directory: the notebook's folder).

    Execution continues past errors so that every grade cell reports; the file is not modified.
    """
    nb = nbformat.read(path, as_version=4)
    old_env = dict(os.environ)
    os.environ.update({"MPLBACKEND": "Agg", **(env or {})})
    start = time.perf_counter()
    error = None
    try:
        # IPC transport, connection files in a private folder: no TCP ports (no collisions between
        # parallel runs) and no "Kernel is running over TCP without encryption" warning.
        kdir = tempfile.mkdtemp(prefix="attn-exec-")
        km = AsyncKernelManager(
            kernel_name="python3", transport="ipc",
            ip=os.path.join(kdir, "ipc"), connection_file=os.path.join(kdir, "kernel.json"),
        )
        client = NotebookClient(
            nb, km=km, timeout=timeout, allow_errors=True, resources={"metadata": {"path": str(path.parent)}}
        )
        try:
            client.execute(cleanup_kc=True)
        finally:
            shutil.rmtree(kdir, ignore_errors=True)
    except CellExecutionError as exc:  # pragma: no cover - allow_errors makes this rare
        error = str(exc).splitlines()[0]
    except Exception as exc:  # kernel death, timeout: report, never crash the caller
        error = f"{type(exc).__name__}: {exc}"
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    result = RunResult(path=path, seconds=time.perf_counter() - start, error=error)
    for cell in nb.cells:
        if nbutils.is_grade(cell) and cell.cell_type == "code":
            result.checks_total += 1
            failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            if failed:
                result.failed_checks.append(cell.metadata["nbgrader"]["grade_id"])
            else:
                result.checks_passed += 1
    if error is None:
        for cell in nb.cells:
            if cell.cell_type == "code" and not nbutils.is_grade(cell):
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        result.error = f"cell raised {out.get('ename')}: {out.get('evalue')}"
                        break
            if result.error:
                break
    return nb, result


def execute_solutions() -> int:
    """Execute each solution notebook in a fresh kernel and print one line per notebook."""
    failures = 0
    print(f"{'notebook':<55} {'time':>7}  checks")
    for nb in course.notebooks():
        _, result = execute_notebook(nb.source)
        status = "ok" if result.ok else "FAILED"
        print(
            f"{str(nb.source.relative_to(course.root())):<55} {result.seconds:>6.1f}s  "
            f"{result.checks_passed}/{result.checks_total} passed  {status}"
        )
        if not result.ok:
            failures += 1
            for check in result.failed_checks:
                print(f"    failed check: {check}")
            if result.error:
                print(f"    error: {result.error}")
    return 1 if failures else 0
