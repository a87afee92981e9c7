"""Scoring: from how a notebook ran (:class:`~grading.model.ExecLog`) to one result per question.

A test cell's points are shared equally by the properties it checks (its ``attnkit.prop`` blocks,
visible and hidden): it earns the share of each that passed.  A cell without properties, or one that
raised outside them, earns all or nothing.
Output on stderr and warnings never count (nbgrader's ``determine_grade`` gives 0 for any stderr
output, a known pitfall).  Written answers are ``manual`` with no score, or ``graded`` 0 when left as
the stub ("No response", as nbgrader does).

What a failure says depends on where it happened: a visible check shows its message and traceback
(the student sees the same in their notebook); a hidden check shows only a short reason in words.
An exception raised by the student's own code inside a hidden check is reported by its type alone:
its text is the student's (it may hold anything, e.g. environment variables) and may describe the
hidden inputs.
"""

from __future__ import annotations

import re

from grading.intake.mapping import Intake
from grading.intake.template import Part, Template
from grading.model import CellStatus, ExecLog, GradedBy, Hidden, QuestionResult, Status, quotable_type

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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


def error_line(error: dict) -> str:
    name, message = error.get("ename") or "Error", ANSI.sub("", str(error.get("evalue") or "")).strip()
    return f"{name}: {message}" if message else name


def hidden_reason(error: dict) -> str:
    """A hidden check's failure in words, without the student's own exception text."""
    if error.get("student_raised"):
        return f"your code raised {quotable_type(str(error.get('ename') or 'Exception'))} when a hidden check called it"
    if error.get("ename") == "NotImplementedError":
        return "not answered yet"
    return error_line(error)


def question_title(part: Part) -> str:
    return part.title or part.grade_id


def _new(part: Part) -> QuestionResult:
    return QuestionResult(
        part.grade_id, GradedBy(part.graded_by), part.points or 0.0, None, Status.GRADED,
        answer=part.answer if part.kind == "test" else part.grade_id, title=question_title(part),
    )


def score(template: Template, intake: Intake, log: ExecLog) -> list[QuestionResult]:
    results = []
    for part in template.questions:
        q = _new(part)
        if part.graded_by == GradedBy.MANUAL:
            if part.kind == "answer" and not intake.answered.get(part.grade_id, False):
                q.score, q.reason = 0.0, "no response (the answer is the unchanged stub)"
            else:
                q.status, q.reason = Status.MANUAL, "awaiting grading by the instructor"
            results.append(q)
            continue
        has_hidden = any(s.hidden for s in part.segments)
        answer = template.parts.get(part.answer) if part.answer else None
        answer_run = log.runs.get(answer.index) if answer is not None else None
        if answer_run is not None and answer_run.error is not None:
            q.answer_error = error_line(answer_run.error)
        run = log.runs.get(part.index)
        if run is None:
            q.score, q.status = 0.0, Status.ERROR
            q.reason = f"not run: {log.stop_reason or log.start_error or 'execution stopped'}"
            q.hidden = Hidden.NOT_RUN if has_hidden else None
            results.append(q)
            continue
        q.visible = _text(run.visible)
        q.properties = list(run.properties)
        unanswered = part.answer is not None and not intake.answered.get(part.answer, True)
        if run.error is None and unanswered and run.score:  # a property an untouched stub passes earns nothing
            run.score = 0.0
            q.reason = "not answered yet (the answer cell is the unchanged stub)"
        if run.error is None:
            q.score = q.max_score if run.score is None else min(max(run.score, 0.0), q.max_score)
            q.hidden = Hidden.PASSED if has_hidden else None
            failed = [p for p in q.properties if not p.passed]
            if failed:
                q.reason = "; ".join(f"{p.name}: {p.reason}" if p.reason else p.name for p in failed)
                visible = [p for p in failed if not p.hidden]
                hidden = [p for p in failed if p.hidden]
                if visible:
                    q.visible_error = f"{visible[0].name}: {visible[0].reason}"
                if hidden:
                    q.hidden = Hidden.FAILED
                    q.hidden_error = "; ".join(f"{p.name}: {p.reason}" for p in hidden)
                if all("not answered yet" in p.reason for p in failed):  # one unfinished answer: one sentence, not one per check
                    q.reason = f"{failed[0].reason} ({len(failed)} of {len(q.properties)} checks could not run)"
                    q.hidden_error = q.hidden_error and "not answered yet"
        else:
            q.score = 0.0
            if run.status is CellStatus.DIED:
                q.status = Status.ERROR
                q.reason = log.stop_reason or "the kernel died"
            elif run.status is CellStatus.TIMEOUT and log.stopped_at == part.index:
                q.status = Status.ERROR
                q.reason = log.stop_reason or error_line(run.error)
            if run.error_segment_hidden:
                q.hidden, q.hidden_error = Hidden.FAILED, hidden_reason(run.error)
                if "NotImplementedError" in q.hidden_error or (q.answer_error == "NotImplementedError" and "NameError" in q.hidden_error):
                    q.reason = q.reason or "not answered yet: NotImplementedError (this answer, or another TODO it calls, still raises it)"
                q.reason = q.reason or f"hidden checks failed: {q.hidden_error}"
            else:
                message = error_line(run.error)
                if run.error.get("ename") == "NotImplementedError":
                    message = "not answered yet (the answer cell still raises NotImplementedError)"
                q.visible_error = message
                q.visible_traceback = ANSI.sub("", "\n".join(run.error.get("traceback", []))) or None
                q.hidden = Hidden.NOT_RUN if has_hidden else None
                q.reason = q.reason or message
            if q.answer_error and q.status is Status.GRADED and not q.reason.startswith("not answered yet"):
                q.reason = f"the answer cell `{part.answer}` raised {q.answer_error}; then {q.reason}"
        results.append(q)
    return results


def error_questions(template: Template, reason: str) -> list[QuestionResult]:
    """Every question at 0 with status ``error``: the submission could not be graded at all."""
    results = []
    for part in template.questions:
        q = _new(part)
        q.score, q.status, q.reason = 0.0, Status.ERROR, f"not graded: {reason}"
        q.hidden = Hidden.NOT_RUN if any(s.hidden for s in part.segments) else None
        results.append(q)
    return results
