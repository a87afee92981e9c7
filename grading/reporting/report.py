"""``OUT/report``: what happened to every submission, in words, for the instructor."""

from __future__ import annotations

from pathlib import Path

from grading.model import Status, SubmissionResult
from grading.reporting.table import fmt, score_text
from grading.text import line, one_line


def _line(text: str) -> str:
    """One line of a submission's entry: its student-controlled parts (a kernel name, an error) cannot start
    a line of their own, so no entry can pose as another student's."""
    return "   " + one_line(text, 2000)


def write_report(path: Path, results: list[SubmissionResult], header: list[str]) -> None:
    lines = [line(h) for h in header]  # a header entry quoting a file name stays one line
    for r in results:
        status = "ERROR" if r.error else ("graded with errors" if r.has_errors else "graded")
        score = score_text(r)
        if r.manual_pending:
            score += f" (+{fmt(r.manual_pending)} to grade by hand)"
        took = r.timings.get("total")
        lines += ["", one_line(f"== {r.student_id} / {r.assignment} / {r.notebook}: {score}  [{status}]" + (f"  {took:.1f}s" if took else ""), 2000)]
        lines.append(_line(f"file: {r.submission}" + (f"  ({r.format})" if r.format else "")))
        if r.error:
            lines.append(_line(f"could not be graded: {r.error}"))
        for repair in r.repairs:
            lines.append(_line(f"repaired: {repair}"))
        for item in r.neutralised:
            lines.append(_line(f"neutralised: {item}"))
        for event in r.events:
            lines.append(_line(f"execution: {event}"))
        for item in r.tampering:
            lines.append(_line(f"possible tampering: {item}"))
        for q in r.questions:
            if q.status is Status.MANUAL:
                continue
            if q.status is Status.ERROR or (q.score or 0) < q.max_score:
                lines.append(_line(f"{q.grade_id}: {fmt(q.score or 0)}/{fmt(q.max_score)} [{q.status}] {q.reason}"))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
