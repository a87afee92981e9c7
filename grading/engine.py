"""Sandboxed execution with trusted verdicts: the default way :mod:`grading.autograde` runs a notebook.

:func:`execute_sandboxed` fills the same :class:`~grading.autograde.ExecLog` as the plain
kernel executor, so scoring, feedback and the report are shared; what differs is where
code runs:

* student cells (answers, "try it" cells) run in the sandboxed runner's child process
  (:mod:`grading.runner`, forked from a warm zygote: a fresh interpreter state per submission);
* locked, given cells (set-up, given code) run there *and* in this process;
* test cells run in the sandbox as students see them (visible part, to keep its state as in
  a normal run) and are then decided here, segment by segment, by :func:`run_grade_cell`:
  the student's objects are fetched as plain tensors or called through proxies, and every
  comparison uses this process's torch and builtins.

One runner (one sandbox, one warm zygote) lives in each worker process and serves its
submissions one after another; a runner that hangs or dies is replaced.
"""

from __future__ import annotations

import ast
import atexit
import tempfile
import threading
import time
from pathlib import Path

import nbformat

from grading.remote import Runner, RunnerError, RunnerInterrupted, TrustedNamespace, run_grade_cell
from grading.sandbox import Limits, Sandbox

_RUNNERS: dict[tuple, Runner] = {}


def runner_for(options) -> Runner:
    """This process's runner for these options (limits, hidden paths), started on first use."""
    # one runner per thread: a Dask worker may run several tasks at once in threads
    key = (threading.get_ident(), options.sandbox, options.memory_bytes, options.cpu_seconds,
           options.max_processes, options.hide, options.threads)
    runner = _RUNNERS.get(key)
    if runner is not None and runner.alive:
        return runner
    if runner is not None:
        runner.close()
    limits = Limits(memory_bytes=options.memory_bytes, cpu_seconds=options.cpu_seconds, max_processes=options.max_processes)
    scratch = Path(tempfile.mkdtemp(prefix="attn-sandbox-")) / "scratch"
    sandbox = Sandbox(scratch, limits=limits, hidden=tuple(Path(p) for p in options.hide)) if options.sandbox else None
    runner = Runner(sandbox, limits=limits, threads=options.threads)
    _RUNNERS[key] = runner
    return runner


def close_runners() -> None:
    for runner in list(_RUNNERS.values()):
        runner.close()
    _RUNNERS.clear()


atexit.register(close_runners)  # a worker process that ends takes its sandboxes with it


# --------------------------------------------------------------------------------------------
# tampering: reported, never rewarded (verdicts do not depend on the student's process)

_PATCH_TARGETS = ("torch", "np", "numpy", "builtins", "__builtins__", "sys", "attnkit", "math", "warnings", "nn", "F")
_SUSPICIOUS_CALLS = {"set_custom_exc", "register", "setattr", "reload", "excepthook", "settrace", "setprofile"}


def scan_for_tampering(source: str) -> list[str]:
    """Static look at a student cell for monkeypatching of torch, builtins, sys or IPython hooks."""
    text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            root = target
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if target is not root and isinstance(root, ast.Name) and root.id in _PATCH_TARGETS:
                found.append(f"assigns {ast.unparse(target)} (line {node.lineno})")
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            call = ast.unparse(node)
            if name in _SUSPICIOUS_CALLS and (name != "register" or "events" in call) and (
                name != "setattr" or any(call.startswith(f"setattr({t}") for t in _PATCH_TARGETS)
            ):
                found.append(f"calls {call[:80]} (line {node.lineno})")
    return found


# --------------------------------------------------------------------------------------------
# execution


def _stream(name: str, text: str) -> list:
    return [nbformat.v4.new_output("stream", name=name, text=text)] if text else []


def _error(ename: str, evalue: str) -> dict:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def _is_given(cell) -> bool:
    """Locked code cells that are not tests: set-up and given code (restored from the source by intake)."""
    meta = cell.metadata.get("nbgrader", {})
    return meta.get("locked", False) and not meta.get("grade", False) and not meta.get("solution", False)


def execute_sandboxed(nb: nbformat.NotebookNode, template, options, describe) -> object:
    """Run ``nb`` (outputs written into it) with student code sandboxed and verdicts decided here."""
    from grading.autograde import CellRun, ExecLog  # the shared result types

    log = ExecLog()
    t0 = time.perf_counter()
    try:
        runner = runner_for(options)
        runner.begin(timeout=options.startup_timeout)
    except (RunnerError, OSError) as exc:
        close_runners()
        log.start_error = f"the sandbox could not start: {exc}"
        log.start_seconds = time.perf_counter() - t0
        return log
    log.start_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    deadline = t1 + options.notebook_timeout
    tests = {p.index: p for p in template.parts.values() if p.kind == "test"}
    ns = TrustedNamespace()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        now = time.perf_counter()
        if now >= deadline:
            log.stopped_at = index
            log.stop_reason = f"the notebook's time budget ({options.notebook_timeout:g} s) ran out before {describe(template, index)}"
            log.events.append(log.stop_reason)
            break
        limit = min(options.cell_timeout, deadline - now)
        part = tests.get(index)
        try:
            if part is None:
                if not _is_given(cell):
                    log.events += [f"possible tampering in {describe(template, index)}: {t}" for t in scan_for_tampering(cell.source)]
                reply = runner.request({"op": "exec", "source": cell.source}, limit)
                error = None if reply.get("ok") else _error(reply.get("ename", "Error"), reply.get("evalue", ""))
                cell.outputs = _stream("stdout", reply.get("stdout", "")) + _stream("stderr", reply.get("stderr", "")) + ([error] if error else [])
                if _is_given(cell):
                    ns.run_trusted(cell.source)
                log.runs[index] = CellRun("ok" if error is None else "error", time.perf_counter() - now, error=error)
                continue
            runner.request({"op": "exec", "source": part.release_source or cell.source}, limit)
            run = CellRun("ok", 0.0)
            for segment in part.segments:
                left = max(deadline - time.perf_counter(), 0.1)
                verdict = run_grade_cell(runner, ns, segment.source, min(options.cell_timeout, left))
                run.hidden_ran = run.hidden_ran or segment.hidden
                if not segment.hidden:
                    run.visible += _stream("stdout", verdict.stdout)
                if not verdict.ok:
                    run.status, run.error, run.error_segment_hidden = "error", _error(verdict.ename, verdict.evalue), segment.hidden
                    break
            run.seconds = time.perf_counter() - now
            cell.outputs = list(run.visible) + ([run.error] if run.error is not None and not run.error_segment_hidden else [])
            log.runs[index] = run
        except RunnerInterrupted:
            # Interrupted and answering again: only this cell failed; grading goes on.
            what = f"ran for more than {limit:.0f} s and was interrupted"
            error = _error("TimeoutError", f"the cell {what}")
            log.runs[index] = CellRun("timeout", time.perf_counter() - now, error=error)
            cell.outputs = [error]
            log.events.append(f"{describe(template, index)} timed out after {limit:.0f} s and was interrupted")
        except RunnerError as exc:
            timed_out = exc.reason == "timeout"
            detail = str(exc).split(": ", 1)[1] if ": " in str(exc) else ""
            if timed_out:
                log.stop_reason = (f"{describe(template, index)} ran for more than {limit:.0f} s and the kernel "
                                   "did not respond to an interrupt: it was stopped")
            else:
                log.stop_reason = f"the kernel died while running {describe(template, index)} ({detail or 'no detail'})"
            error = _error("TimeoutError" if timed_out else "DeadKernelError", log.stop_reason)
            log.runs[index] = CellRun("timeout" if timed_out else "died", time.perf_counter() - now, error=error)
            cell.outputs = [error]
            log.stopped_at = index
            log.events.append(log.stop_reason)
            break
        except Exception as exc:  # a given cell failed in the trusted process: the template itself is broken
            log.stopped_at = index
            log.stop_reason = f"internal grader error in {describe(template, index)}: {type(exc).__name__}: {exc}"
            log.events.append(log.stop_reason)
            break
    try:
        if runner.alive:
            runner.end()
    except RunnerError:
        pass
    log.run_seconds = time.perf_counter() - t1
    return log
