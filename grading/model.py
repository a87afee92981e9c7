"""The data that flows through grading: tasks in, results out.  Plain data, no behaviour beyond sums.

A :class:`GradeTask` names one submitted file and what to grade it against; a worker turns it into a
:class:`SubmissionResult` (JSON-serialisable, so it can be stored for resume and sent back from a
Dask worker).  Statuses are enums whose values are the words written into ``grades.csv`` and the
stored results, so nothing downstream compares free text.
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import asdict, dataclass, field, fields

from grading.options import GradeOptions

AFTER_HIDDEN = "attnkit_after_hidden"  # output metadata: drawn after a hidden check had called the student's code

class _Word(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class Status(_Word):
    """A question's status in ``grades.csv`` (contract)."""

    GRADED = "graded"
    MANUAL = "manual"  # awaiting a human (written answers)
    ERROR = "error"  # could not be graded: the reason says why


class GradedBy(_Word):
    AUTO = "auto"
    MANUAL = "manual"


class Hidden(_Word):
    """What became of a question's hidden tests."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not run"


class Failure(_Word):
    """Why a whole submission could not be graded."""

    UNREADABLE = "unreadable"  # the file: empty, not JSON, no cells, intake over its budget
    MISSING = "missing"  # not handed in
    WRONG_NOTEBOOK = "wrong notebook"  # another notebook of the course was handed in under this name
    INFRASTRUCTURE = "infrastructure"  # the sandbox or the kernel could not start: not the student's doing
    GRADER = "grader"  # a bug or a lost worker on our side


class CellStatus(_Word):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    DIED = "died"


@dataclass(frozen=True)
class GradeTask:
    student_id: str
    assignment: str
    notebook: str  # stem
    submission: str  # path of the submitted file (.ipynb or .py)
    source: str  # path of the source notebook (solutions, with hidden tests)
    options: GradeOptions = GradeOptions()
    timestamp: str | None = None  # nbgrader's timestamp.txt, when present
    note: str | None = None  # something discovery noticed (e.g. a renamed file)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.student_id, self.assignment, self.notebook)


@dataclass
class PropertyResult:
    """One named property of a question (partial credit): passed or not, and why not, in words."""

    name: str
    points: float
    passed: bool
    reason: str = ""
    hidden: bool = False


@dataclass
class QuestionResult:
    grade_id: str
    graded_by: GradedBy
    max_score: float
    score: float | None
    status: Status
    reason: str = ""  # why it failed / why it was not graded
    answer: str | None = None  # grade_id of the answer cell it checks
    title: str = ""  # the question in words ("Masked softmax"), for people
    visible: str = ""  # visible checks: their text output
    visible_error: str | None = None  # "Type: message" of a failing visible check
    visible_traceback: str | None = None  # its traceback (visible code and helpers only)
    hidden: Hidden | None = None  # None: no hidden tests
    hidden_error: str | None = None  # a short reason in words, never source, traceback or the student's text
    answer_error: str | None = None  # "Type: message" raised by the answer cell itself
    properties: list[PropertyResult] = field(default_factory=list)


@dataclass
class SubmissionResult:
    student_id: str
    assignment: str
    notebook: str
    submission: str  # the graded file ("" when missing)
    format: str = ""
    repairs: list[str] = field(default_factory=list)
    neutralised: list[str] = field(default_factory=list)  # habits made harmless (magics, drive.mount, ...)
    error: str | None = None  # the submission could not be read or run at all
    failure: Failure | None = None  # the kind of that error
    events: list[str] = field(default_factory=list)  # kernel deaths, timeouts, budget
    tampering: list[str] = field(default_factory=list)  # code that patches the grader's view
    questions: list[QuestionResult] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # answer grade_id -> source graded
    answered: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sha256: str = ""
    fingerprint: str = ""  # submission + source notebook + options + grader: a stored result is reused only if it matches
    timestamp: str | None = None
    executed: str | None = None  # the executed notebook (nbformat JSON), for nbgrader's formgrader

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.student_id, self.assignment, self.notebook)

    @property
    def missing(self) -> bool:
        return self.failure is Failure.MISSING

    @property
    def score(self) -> float:
        return sum(q.score or 0 for q in self.questions)

    @property
    def max_score(self) -> float:
        return sum(q.max_score for q in self.questions)

    @property
    def auto_score(self) -> float:
        return sum(q.score or 0 for q in self.questions if q.status is not Status.MANUAL)

    @property
    def manual_pending(self) -> float:
        return sum(q.max_score for q in self.questions if q.status is Status.MANUAL)

    @property
    def has_errors(self) -> bool:
        return self.error is not None or any(q.status is Status.ERROR for q in self.questions)

    def to_dict(self, executed: bool = False) -> dict:
        data = asdict(self)
        if not executed:
            data.pop("executed")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SubmissionResult:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["questions"] = [_question(q) for q in data.get("questions", [])]
        if data.get("failure") is not None:
            data["failure"] = Failure(data["failure"])
        return cls(**data)


def _question(data: dict) -> QuestionResult:
    known = {f.name for f in fields(QuestionResult)}
    data = {k: v for k, v in data.items() if k in known}
    data["graded_by"] = GradedBy(data["graded_by"])
    data["status"] = Status(data["status"])
    if data.get("hidden") is not None:
        data["hidden"] = Hidden(data["hidden"])
    data["properties"] = [PropertyResult(**p) for p in data.get("properties", [])]
    return QuestionResult(**data)


@dataclass
class CellRun:
    """How one code cell ran."""

    status: CellStatus
    seconds: float
    visible: list = field(default_factory=list)  # outputs of visible segments
    error_segment_hidden: bool | None = None  # which kind of segment failed (None: no error)
    error: dict | None = None  # the first error output
    hidden_ran: bool = False
    score: float | None = None  # a grade cell's partial score, when it reported one
    properties: list[PropertyResult] = field(default_factory=list)


@dataclass
class ExecLog:
    """How a notebook ran: per cell, and why it stopped early, if it did."""

    runs: dict[int, CellRun] = field(default_factory=dict)
    stopped_at: int | None = None  # index of the cell where execution stopped for good
    stop_reason: str | None = None
    not_run: list[int] = field(default_factory=list)  # code cells after the last check: they cannot change a score
    events: list[str] = field(default_factory=list)
    neutralised: list[str] = field(default_factory=list)  # students' habits the sandbox made harmless, per cell
    tampering: list[str] = field(default_factory=list)
    figure_bytes: int = 0  # PNG bytes of the figures kept so far
    start_seconds: float = 0.0
    run_seconds: float = 0.0
    start_error: str | None = None  # the sandbox could not start: an infrastructure failure
    disk_read_bytes: int = 0  # what the submission's processes read from storage, not from the page cache


QUOTABLE_TYPES = ("NotImplementedError", "NameError", "MemoryError")  # an unfinished answer (a stub, or a name it
# never defined); out of memory


def quotable_type(ename: str) -> str:
    """An exception's type as the feedback may quote it in, or after, a hidden check: "an exception", but for
    the three that say something a student needs (an unfinished answer, out of memory).  The code chooses what it
    raises: a student's own class can be named after what it kept (``LEAK_1842_...``), and a choice among
    Python's 60-odd exception types carries 6 bits of a hidden input each time."""
    known = getattr(builtins, ename, None)
    return ename if ename in QUOTABLE_TYPES and isinstance(known, type) else "an exception"
