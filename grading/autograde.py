"""Grade one submission: intake, execution in a fresh kernel, scores.  No shared state.

:func:`grade_submission` is a pure function of a :class:`GradeTask` (paths and options, all
picklable) returning a :class:`SubmissionResult` (plain data, JSON-serialisable).  It never writes
outside its private scratch directory: the caller (:mod:`grading.batch`, the single writer) stores
results in the CSV, the gradebook, the feedback and the report.  A process pool runs it now; a
sandbox or a Dask worker can run it later unchanged.

Execution (nbclient, one kernel per submission, ``transport="ipc"`` with the connection files
in the scratch directory: no TCP ports, hence no port collisions between parallel kernels):

* cells run one by one, with a per-cell timeout and a per-notebook budget; errors never stop
  the run (``allow_errors``);
* a test cell runs as its segments (visible checks, then hidden tests: see
  :func:`grading.template.split_hidden`); the hidden part does not run when the visible part
  failed, as in one cell;
* a cell that times out is interrupted (SIGINT); if the kernel then answers, grading goes on and
  only that cell failed; if not, the kernel is killed;
* when the kernel dies or is killed, the questions whose test cells already ran keep their
  scores; the others score 0 with status ``error`` and the reason.

Scoring: a test cell earns its points iff none of its segments raised an error.  Output on
stderr and warnings never count (nbgrader's ``determine_grade`` gives 0 for any stderr output,
a known pitfall), nor do ``execute_result`` values (no partial credit).  Manually graded cells
(written answers) are ``manual`` with no score, or ``graded`` 0 when left as the stub ("No
response", as nbgrader does).  A submission that cannot be read at all (empty file, invalid JSON,
no cells, no code) has every question ``error`` with score 0.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from grading.engine import execute_sandboxed
from grading.intake import KERNEL_NAME, Intake, map_submission
from grading.template import Template, load_template

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_quiet = logging.getLogger("grading.kernel")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False
# nbclient leaves the output poller of an interrupted cell behind; asyncio would log it at exit
logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class GradeOptions:
    cell_timeout: float = 120.0  # seconds per cell (or per segment of a test cell)
    notebook_timeout: float = 600.0  # seconds for all cells of one notebook
    startup_timeout: float = 60.0  # seconds for the kernel to start
    interrupt_grace: float = 5.0  # seconds a timed-out kernel has to answer after SIGINT
    kernel_name: str = KERNEL_NAME
    threads: int = 1  # OMP/MKL threads per kernel (parallel workers share the cores)
    # Sandboxed execution with verdicts decided in the grader's process (grading.engine).
    # False: a plain Jupyter kernel as the grader's own user (only with --no-sandbox).
    sandbox: bool = True
    memory_bytes: int = 2 * 1024**3  # per submission
    cpu_seconds: int = 600  # CPU time per submission
    max_processes: int = 64  # per sandbox
    hide: tuple[str, ...] = ()  # extra folders the sandbox must not see (submissions, output)


@dataclass(frozen=True)
class GradeTask:
    student_id: str
    assignment: str
    notebook: str  # stem
    submission: str  # path of the submitted file (.ipynb or .py)
    source: str  # path of the source notebook (solutions, with hidden tests)
    options: GradeOptions = GradeOptions()
    timestamp: str | None = None  # nbgrader's timestamp.txt, when present
    note: str | None = None  # something the collector noticed (e.g. a renamed file)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.student_id, self.assignment, self.notebook)


@dataclass
class QuestionResult:
    grade_id: str
    graded_by: str  # "auto" | "manual"
    max_score: float
    score: float | None
    status: str  # "graded" | "manual" | "error"
    reason: str = ""  # why it failed / why it was not graded
    answer: str | None = None  # grade_id of the answer cell it checks
    visible: str = ""  # visible checks: their text output (stdout, stderr, results)
    visible_error: str | None = None  # "Type: message" of a failing visible check
    visible_traceback: str | None = None  # its traceback (visible code and helpers only)
    hidden: str | None = None  # None (no hidden tests) | "passed" | "failed" | "not run"
    hidden_error: str | None = None  # "Type: message" only, never source or traceback
    answer_error: str | None = None  # "Type: message" raised by the answer cell itself


@dataclass
class SubmissionResult:
    student_id: str
    assignment: str
    notebook: str
    submission: str
    format: str = ""
    repairs: list[str] = field(default_factory=list)
    error: str | None = None  # the submission could not be read or run at all
    events: list[str] = field(default_factory=list)  # kernel deaths, timeouts, budget
    questions: list[QuestionResult] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # answer grade_id -> source graded
    answered: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sha256: str = ""
    fingerprint: str = ""  # submission + source notebook + options: a finished result is reused only if it matches
    timestamp: str | None = None
    executed: str | None = None  # the executed notebook (nbformat JSON), for nbgrader's formgrader

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.student_id, self.assignment, self.notebook)

    @property
    def score(self) -> float:
        return sum(q.score or 0 for q in self.questions)

    @property
    def max_score(self) -> float:
        return sum(q.max_score for q in self.questions)

    @property
    def auto_max(self) -> float:
        return sum(q.max_score for q in self.questions if q.graded_by == "auto")

    @property
    def has_errors(self) -> bool:
        return self.error is not None or any(q.status == "error" for q in self.questions)

    def to_dict(self, executed: bool = False) -> dict:
        data = asdict(self)
        if not executed:
            data.pop("executed")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SubmissionResult:
        data = dict(data)
        data["questions"] = [QuestionResult(**q) for q in data.get("questions", [])]
        return cls(**data)


# --------------------------------------------------------------------------------------------
# execution


@dataclass
class CellRun:
    status: str  # "ok" | "error" | "timeout" | "died"
    seconds: float
    visible: list = field(default_factory=list)  # outputs of visible segments
    error_segment_hidden: bool | None = None  # which kind of segment failed (None: no error)
    error: dict | None = None  # the first error output
    hidden_ran: bool = False


@dataclass
class ExecLog:
    runs: dict[int, CellRun] = field(default_factory=dict)
    stopped_at: int | None = None  # index of the cell where execution stopped for good
    stop_reason: str | None = None
    events: list[str] = field(default_factory=list)
    start_seconds: float = 0.0
    run_seconds: float = 0.0
    start_error: str | None = None


def _first_error(outputs) -> dict | None:
    for out in outputs:
        if out.get("output_type") == "error":
            return out
    return None


def _kernel_env(options: GradeOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"NBGRADER_EXECUTION": "autograde", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    if options.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(var, str(options.threads))
    env.pop("JPY_PARENT_PID", None)
    return env


def _describe_cell(template: Template, index: int) -> str:
    for part in template.parts.values():
        if part.index == index:
            kind = {"answer": "answer", "test": "test"}.get(part.kind, part.kind + " cell")
            return f"cell {index + 1} ({kind} `{part.grade_id}`)"
    return f"cell {index + 1}"


def _client_class():
    """nbclient's NotebookClient, remembering when a cell hit its timeout."""
    from nbclient import NotebookClient

    class Client(NotebookClient):
        timed_out = False

        async def _async_handle_timeout(self, timeout, cell=None):
            self.timed_out = True
            return await super()._async_handle_timeout(timeout, cell)

    return Client


def execute(nb: nbformat.NotebookNode, template: Template, options: GradeOptions, workdir: Path) -> ExecLog:
    """Run ``nb`` (modified in place: outputs) in a fresh kernel; never raises for student faults.

    nbclient executes *pieces*: a code cell, or one segment of a test cell, each in a scratch
    notebook of its own (nbclient writes every executed cell back into its notebook), and the
    outputs are gathered into ``nb``.  On a timeout nbclient interrupts the kernel and returns at
    once (``interrupt_on_timeout`` with ``error_on_timeout``); a probe then checks that the kernel
    answers again within ``interrupt_grace`` seconds, else the kernel is stopped.
    """
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    log = ExecLog()
    tests = {p.index: p for p in template.parts.values() if p.kind == "test"}
    kdir = Path(tempfile.mkdtemp(prefix="k", dir=workdir))
    km = AsyncKernelManager(
        kernel_name=options.kernel_name, transport="ipc",
        ip=str(kdir / "ipc"), connection_file=str(kdir / "kernel.json"),
    )
    scratch = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")], metadata=copy.deepcopy(nb.metadata))
    client = _client_class()(
        scratch, km=km, timeout=int(options.cell_timeout), startup_timeout=int(options.startup_timeout),
        allow_errors=True, interrupt_on_timeout=True, shutdown_kernel="immediate",
        error_on_timeout={"ename": "TimeoutError", "evalue": "interrupted", "traceback": []},
        record_timing=False, iopub_timeout=5, raise_on_iopub_timeout=False, log=_quiet,
    )
    kernel_log = open(kdir / "kernel.log", "wb")  # noqa: SIM115 - closed in finally
    t0 = time.perf_counter()
    deadline = t0 + options.notebook_timeout
    ctx = None
    try:
        try:
            ctx = client.setup_kernel(env=_kernel_env(options), cwd=str(workdir), cleanup_kc=True,
                                      stdout=kernel_log, stderr=kernel_log)
            ctx.__enter__()
        except Exception as exc:  # noqa: BLE001
            ctx = None
            log.start_error = f"the kernel could not start: {type(exc).__name__}: {exc}"
            log.start_seconds = time.perf_counter() - t0
            return log
        log.start_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if time.perf_counter() >= deadline:
                    log.stopped_at, log.stop_reason = index, (
                        f"the notebook's time budget ({options.notebook_timeout:g} s) ran out before {_describe_cell(template, index)}"
                    )
                    break
                part = tests.get(index)
                segments = [(s.source, s.hidden) for s in part.segments] if part else [(cell.source, False)]
                run = CellRun("ok", 0.0)
                outputs: list = []
                c0 = time.perf_counter()
                stop = False
                for source, hidden in segments:
                    piece = nbformat.v4.new_code_cell(source)
                    limit = max(1, int(min(options.cell_timeout, deadline - time.perf_counter())))
                    client.timeout, client.timed_out = limit, False
                    run.hidden_ran |= hidden
                    try:
                        client.execute_cell(piece, 0)
                    except DeadKernelError:
                        run.status = "died"
                        log.stopped_at = index
                        log.stop_reason = f"the kernel died while running {_describe_cell(template, index)}"
                        stop = True
                    except CellTimeoutError:  # pragma: no cover - interrupt_on_timeout returns instead
                        client.timed_out = True
                    if client.timed_out and not stop:
                        piece.outputs.insert(0, nbformat.v4.new_output(
                            "error", ename="TimeoutError", evalue=f"the cell ran for more than {limit} s and was interrupted", traceback=[],
                        ))
                        run.status = "timeout"
                        if _responsive(client, options):
                            log.events.append(f"{_describe_cell(template, index)} timed out after {limit} s and was interrupted")
                        else:
                            log.stopped_at = index
                            log.stop_reason = (
                                f"{_describe_cell(template, index)} ran for more than {limit} s and the kernel "
                                f"did not respond to an interrupt: it was stopped"
                            )
                            stop = True
                    outputs.extend(piece.outputs)
                    if not hidden:
                        run.visible.extend(piece.outputs)
                    error = _first_error(piece.outputs)
                    if error is not None and run.error is None:
                        run.error = dict(error)
                        run.error_segment_hidden = bool(hidden)
                        if run.status == "ok":
                            run.status = "error"
                    if stop or error is not None:
                        break
                if stop and run.error is None:
                    run.error_segment_hidden = False
                cell.outputs = outputs
                cell.execution_count = index + 1
                run.seconds = time.perf_counter() - c0
                log.runs[index] = run
                if stop:
                    break
        finally:
            log.run_seconds = time.perf_counter() - t1
    finally:
        if ctx is not None:
            try:
                ctx.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - a dead kernel may fail to shut down cleanly
                pass
        try:
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001
            pass
        kernel_log.close()
        if log.stop_reason:
            log.events.append(log.stop_reason)
    return log


def _responsive(client, options: GradeOptions) -> bool:
    """After an interrupt: does the kernel run a trivial cell within ``interrupt_grace`` seconds?"""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client.interrupt_on_timeout = False
    client.timeout = max(1, int(options.interrupt_grace))
    try:
        client.execute_cell(nbformat.v4.new_code_cell("pass"), 0)
        return True
    except (CellTimeoutError, DeadKernelError):
        return False
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.interrupt_on_timeout = True


# --------------------------------------------------------------------------------------------
# scoring


def _text(outputs) -> str:
    parts = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data:
                parts.append(data["text/plain"] + "\n")
            elif any(k.startswith("image/") for k in data):
                parts.append("[figure]\n")
    return "".join(parts)  # errors are reported on their own (visible_error)


def _error_line(error: dict) -> str:
    name, message = error.get("ename") or "Error", ANSI.sub("", str(error.get("evalue") or "")).strip()
    return f"{name}: {message}" if message else name


def score(template: Template, intake: Intake, log: ExecLog) -> list[QuestionResult]:
    results = []
    for part in template.questions:
        q = QuestionResult(part.grade_id, part.graded_by, part.points or 0.0, None, "graded",
                           answer=part.answer if part.kind == "test" else part.grade_id)
        if part.graded_by == "manual":
            if part.kind == "answer" and not intake.answered.get(part.grade_id, False):
                q.score, q.reason = 0.0, "no response (the answer is the unchanged stub)"
            else:
                q.status, q.reason = "manual", "awaiting grading by the instructor"
            results.append(q)
            continue
        has_hidden = any(s.hidden for s in part.segments)
        answer = template.parts.get(part.answer) if part.answer else None
        answer_run = log.runs.get(answer.index) if answer is not None else None
        if answer_run is not None and answer_run.error is not None:
            q.answer_error = _error_line(answer_run.error)
        run = log.runs.get(part.index)
        if run is None:
            q.score, q.status = 0.0, "error"
            q.reason = f"not run: {log.stop_reason or log.start_error or 'execution stopped'}"
            q.hidden = "not run" if has_hidden else None
            results.append(q)
            continue
        q.visible = _text(run.visible)
        if run.error is None:
            q.score = q.max_score
            q.hidden = "passed" if has_hidden else None
        else:
            q.score = 0.0
            message = _error_line(run.error)
            if run.status == "died":
                q.status = "error"
                q.reason = log.stop_reason or "the kernel died"
            elif run.status == "timeout" and log.stopped_at == part.index:
                q.status = "error"
                q.reason = log.stop_reason or message
            if run.error_segment_hidden:
                q.hidden, q.hidden_error = "failed", message
                q.reason = q.reason or f"hidden checks failed: {message}"
            else:
                q.visible_error = message
                q.visible_traceback = ANSI.sub("", "\n".join(run.error.get("traceback", []))) or None
                q.hidden = "not run" if has_hidden else None
                q.reason = q.reason or message
            if q.answer_error and q.status == "graded":
                q.reason = f"the answer cell `{part.answer}` raised {q.answer_error}; then {q.reason}"
        results.append(q)
    return results


def _error_questions(template: Template, reason: str) -> list[QuestionResult]:
    return [
        QuestionResult(p.grade_id, p.graded_by, p.points or 0.0, 0.0, "error", f"not graded: {reason}",
                       answer=p.answer if p.kind == "test" else p.grade_id,
                       hidden="not run" if any(s.hidden for s in p.segments) else None)
        for p in template.questions
    ]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(task: GradeTask) -> str:
    """What a result depends on: the submitted file, the source notebook (tests) and the options."""
    digest = hashlib.sha256()
    for part in (sha256(Path(task.submission)), sha256(Path(task.source)), repr(task.options)):
        digest.update(part.encode())
    return digest.hexdigest()


def grade_submission(task: GradeTask) -> SubmissionResult:
    """Grade one submitted notebook; every failure of the submission ends up in the result."""
    t0 = time.perf_counter()
    result = SubmissionResult(task.student_id, task.assignment, task.notebook, task.submission, timestamp=task.timestamp)
    template = load_template(Path(task.source), task.assignment, task.notebook)
    path = Path(task.submission)
    try:
        result.sha256 = sha256(path)
        result.fingerprint = fingerprint(task)
    except OSError as exc:
        result.error = f"cannot read the file: {exc}"
    intake = map_submission(path, template) if result.error is None else Intake(error=result.error)
    result.format, result.repairs = intake.format, list(intake.repairs)
    if task.note:
        result.repairs.insert(0, task.note)
    result.timings["read"] = time.perf_counter() - t0
    if intake.error is not None:
        result.error = intake.error
        result.questions = _error_questions(template, intake.error)
        result.timings["total"] = time.perf_counter() - t0
        return result
    result.answers, result.answered = dict(intake.answer_source), dict(intake.answered)
    nb = intake.nb
    nb.metadata["kernelspec"] = {"name": task.options.kernel_name, "display_name": "Python 3 (ipykernel)", "language": "python"}
    workdir = Path(tempfile.mkdtemp(prefix="attn-grade-"))
    try:
        support = Path(task.source).parent
        for item in support.iterdir():  # data files next to the notebook, as nbgrader copies them
            if item.suffix == ".ipynb" or item.name.startswith(".") or item.name == "__pycache__":
                continue
            if item.is_dir():
                shutil.copytree(item, workdir / item.name)
            else:
                shutil.copy2(item, workdir / item.name)
        if task.options.sandbox:
            log = execute_sandboxed(nb, template, task.options, _describe_cell)
        else:
            log = execute(nb, template, task.options, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.timings["start"] = log.start_seconds
    result.timings["run"] = log.run_seconds
    if log.start_error:
        result.error = log.start_error
        result.events.append(log.start_error)
        result.questions = _error_questions(template, log.start_error)
    else:
        result.events = list(log.events)
        result.questions = score(template, intake, log)
    result.executed = nbformat.writes(nb)
    result.timings["total"] = time.perf_counter() - t0
    return result
