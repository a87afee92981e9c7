"""Run many grading tasks: worker processes on this machine, or a Dask cluster.

Both call :func:`grading.submission.grade_submission` and hand each result, as it finishes, to
``on_result`` in the calling process (the single writer).  A worker that dies (a submission killing
its grader) costs only the tasks it held: they are retried, and alone, in fresh processes; one that
kills that too is marked as such.  Ctrl-C stops every worker and its sandbox at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from grading.execution import engine
from grading.intake.template import load_template
from grading.model import Failure, GradeTask, SubmissionResult
from grading.scoring import error_questions
from grading.submission import grade_submission

OnResult = Callable[[SubmissionResult], None]


def crashed(task: GradeTask, reason: str, failure: Failure = Failure.GRADER) -> SubmissionResult:
    template = load_template(Path(task.source), task.assignment, task.notebook)
    result = SubmissionResult(task.student_id, task.assignment, task.notebook, task.submission, timestamp=task.timestamp)
    result.error, result.failure = reason, failure
    result.questions = error_questions(template, reason)
    return result


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    engine.forget_runners()  # a forked worker must not talk to sandboxes its parent may hold


_FORK = False  # set by the command line, whose process runs no other thread (see allow_fork)


def allow_fork() -> None:
    """Say that this process runs no thread but its main one, so that workers may be forked from it."""
    global _FORK
    _FORK = True


def _context():
    """How worker processes start.  Forked from this process when the command line said it may
    (:func:`allow_fork`): the grader is already imported here, and a fresh interpreter spends about 4 s
    importing it again.  Forking while other threads may hold locks (a test runner, a notebook server)
    can deadlock, so otherwise workers fork from a clean server process that imports the grader once.
    Elsewhere than Linux: fresh interpreters."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    if _FORK:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["grading.submission"])
    return context


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_worker_init)


def _stop(pool: cf.ProcessPoolExecutor) -> None:
    """Kill every worker now (their sandboxes die with them: bwrap --die-with-parent)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        try:
            process.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def run_local(tasks: list[GradeTask], workers: int, on_result: OnResult) -> None:
    """Grade ``tasks`` with ``workers`` processes (0: in this process), in order of completion."""
    if workers <= 0:
        for task in tasks:
            try:
                on_result(grade_submission(task))
            except Exception as exc:  # noqa: BLE001
                on_result(crashed(task, f"internal grader error: {type(exc).__name__}: {exc}"))
        return
    attempts: dict[tuple, int] = {}
    pending, isolate = list(tasks), []
    while pending:
        pool = _pool(min(workers, len(pending)))
        futures = {pool.submit(grade_submission, t): t for t in pending}
        broken = []
        try:
            for future in cf.as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except cf.process.BrokenProcessPool:
                    broken.append(task)  # the pool died: this one and every unfinished one
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug must not stop the class
                    detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    result = crashed(task, f"internal grader error: {detail}")
                on_result(result)
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        pending = []
        for task in broken:  # retry once with the others, then alone
            attempts[task.key] = attempts.get(task.key, 0) + 1
            (isolate if attempts[task.key] >= 2 else pending).append(task)
    for task in isolate:  # alone, in a fresh process: a death now is this submission's doing
        pool = _pool(1)
        try:
            result = pool.submit(grade_submission, task).result()
        except cf.process.BrokenProcessPool:
            result = crashed(task, "the grading process died while running this submission (did it kill its parent?)")
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        on_result(result)


def run_dask(tasks: list[GradeTask], scheduler: str, on_result: OnResult) -> None:
    """Grade ``tasks`` on a Dask cluster (``scheduler``: its address, e.g. ``tcp://10.0.0.5:8786``).

    Each task is the same pure ``grade_submission`` call as locally, so the sandbox and the trusted
    verdicts apply on every worker.  Workers need this environment, bubblewrap, and the submissions
    and solutions at the same paths (a shared file system).
    """
    from distributed import Client, as_completed

    with Client(scheduler, timeout="60s") as client:
        futures = {client.submit(grade_submission, task, pure=False, retries=1): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker or a bug must not stop the class
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                result = crashed(task, f"the Dask worker failed: {detail}")
            on_result(result)
