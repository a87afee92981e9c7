"""Grade one submission: intake -> execution -> scoring.  A pure function of a :class:`GradeTask`.

:func:`grade_submission` returns a :class:`SubmissionResult` (plain data) and writes nothing
outside private temporary folders: the caller (:mod:`grading.pipeline`, the single writer)
stores results.  A worker process, a Dask worker or the tests run it unchanged.

Intake reads untrusted input (a notebook's JSON, a script) in the grader's process, so it runs in a
forked child with its own time and memory budget: a pathological file becomes an error row for
that student within ``intake_timeout`` seconds, never a stalled worker.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import resource
import select
import signal
import time
from importlib import metadata
from pathlib import Path

import nbformat

from grading.execution.engine import execute
from grading.intake.mapping import KERNEL_NAME, Intake, map_submission
from grading.intake.template import Template, load_template, to_python
from grading.model import Failure, GradeTask, SubmissionResult
from grading.options import GIB
from grading.scoring import error_questions, score

INTAKE_MEMORY = 2 * GIB


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def grader_version() -> str:
    """The grader's own code and the libraries answers run on: the source of ``grading`` and ``attnkit``, and
    the versions of torch, numpy and matplotlib.  A result graded by other code is graded again (resume)."""
    import attnkit

    digest = hashlib.sha256()
    for package in (Path(__file__).resolve().parent, Path(attnkit.__file__).resolve().parent):
        for path in sorted(package.rglob("*.py")):
            digest.update(f"{path.relative_to(package)}\0".encode())
            digest.update(path.read_bytes())
    for name in ("torch", "numpy", "matplotlib", "nbgrader"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{name}=={metadata.version(name)}\0".encode())
    return digest.hexdigest()


def fingerprint(task: GradeTask) -> str:
    """What a result depends on: the submitted file, the source notebook (tests), the options and the grader."""
    digest = hashlib.sha256()
    for part in (sha256(Path(task.submission)), sha256(Path(task.source)), repr(task.options), grader_version()):
        digest.update(part.encode())
    return digest.hexdigest()


def _read_all(fd: int, deadline: float) -> bytes | None:
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def bounded_intake(path: Path, template: Template, seconds: float) -> Intake:
    """:func:`map_submission` in a forked child, within ``seconds`` and :data:`INTAKE_MEMORY`."""
    for cell in template.nb.cells:  # in the parent, so that every child inherits the cache
        to_python(cell.source)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: map, send the pickled result, exit without cleanup handlers
        os.close(read_fd)
        try:
            with open("/proc/self/status") as status:  # what this process already maps, plus the budget
                mapped = next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:")), 0)
            resource.setrlimit(resource.RLIMIT_AS, (mapped + INTAKE_MEMORY, mapped + INTAKE_MEMORY))
            try:
                intake = map_submission(path, template)
            except RecursionError:
                intake = Intake(error="not readable: the file is nested too deeply to parse")
            except MemoryError:
                intake = Intake(error="not readable: reading the file needs more than 2 GiB of memory")
            except Exception as exc:  # noqa: BLE001 - any failure is this submission's error row
                intake = Intake(error=f"not readable: {type(exc).__name__} while reading the file")
            data = pickle.dumps(intake)
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view):]
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, time.monotonic() + seconds)
    finally:
        os.close(read_fd)
        if data is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        return Intake(error=f"not readable: reading and mapping the file took more than {seconds:g} s")
    if not data:
        return Intake(error="not readable: the reader stopped (memory or recursion limit)")
    return pickle.loads(data)  # noqa: S301 - our own child's pickle


def grade_submission(task: GradeTask) -> SubmissionResult:
    """Grade one submitted notebook; every failure of the submission ends up in the result."""
    t0 = time.perf_counter()
    options = task.options
    result = SubmissionResult(task.student_id, task.assignment, task.notebook, task.submission, timestamp=task.timestamp)
    template = load_template(Path(task.source), task.assignment, task.notebook)
    path = Path(task.submission)
    try:
        result.sha256 = sha256(path)
        result.fingerprint = fingerprint(task)
    except OSError as exc:
        result.error, result.failure = f"cannot read the file: {exc}", Failure.UNREADABLE
    if result.error is None:
        intake = bounded_intake(path, template, min(options.intake_timeout, options.notebook_timeout))
    else:
        intake = Intake(error=result.error)
    result.format, result.repairs = intake.format, list(intake.repairs)
    result.neutralised = list(getattr(intake, "neutralised", []))
    if task.note:
        result.repairs.insert(0, task.note)
    result.timings["read"] = time.perf_counter() - t0
    if intake.error is not None:
        result.error, result.failure = intake.error, result.failure or Failure.UNREADABLE
        result.questions = error_questions(template, intake.error)
        result.timings["total"] = time.perf_counter() - t0
        return result
    result.answers, result.answered = dict(intake.answer_source), dict(intake.answered)
    nb = intake.nb
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
    budget = max(options.notebook_timeout - (time.perf_counter() - t0), 1.0)
    log = execute(nb, template, options, budget)
    result.timings["start"] = log.start_seconds
    result.timings["run"] = log.run_seconds
    result.tampering = list(log.tampering)
    if log.disk_read_bytes > options.disk_read_flag:
        result.tampering.append(
            f"read {log.disk_read_bytes / 2**20:.0f} MiB of files from disk (more than {options.disk_read_flag / 2**20:g} MiB): "
            "the libraries the course uses are already in memory, so this is an import of another library (the first "
            "time one is imported in a run: pandas reads about 27 MiB) or many pages of files read one by one, which is "
            "how two submissions pass data through the page cache")
    if log.start_error:
        result.error, result.failure = log.start_error, Failure.INFRASTRUCTURE
        result.events.append(log.start_error)
        result.questions = error_questions(template, log.start_error)
    else:
        result.events = list(log.events)
        result.neutralised += log.neutralised
        result.questions = score(template, intake, log)
    result.executed = nbformat.writes(nb)
    result.timings["total"] = time.perf_counter() - t0
    return result
