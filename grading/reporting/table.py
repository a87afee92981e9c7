"""``grades.csv`` (contract) and the students x notebooks table printed by the demo."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from grading import course
from grading.model import Status, SubmissionResult
from grading.text import clean

HEADER = ["student_id", "assignment", "notebook", "question", "score", "max_score", "status"]


def fmt(x: float | None) -> str:
    if x is None:
        return ""
    return f"{round(float(x), 4):g}"


def rows(result: SubmissionResult) -> list[list[str]]:
    return [
        [result.student_id, result.assignment, result.notebook, q.grade_id,
         "" if q.status is Status.MANUAL else fmt(q.score if q.score is not None else 0), fmt(q.max_score), str(q.status)]
        for q in result.questions
    ]


def write_grades(path: Path, results: list[SubmissionResult]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for result in results:
            writer.writerows(rows(result))


def score_text(r: SubmissionResult) -> str:
    return f"{fmt(r.auto_score)}/{fmt(r.max_score - r.manual_pending)}"


def print_table(results: list[SubmissionResult], stream=None) -> None:
    """Students x notebooks: autograded score / max (+ points awaiting a human)."""
    stream = stream or sys.stdout
    columns = [(nb.assignment, nb.name) for nb in course.notebooks()]
    columns = [c for c in columns if any((r.assignment, r.notebook) == c for r in results)]
    cells: dict[str, dict] = {}
    for r in results:
        text = score_text(r)
        if r.error:
            text += " ERR"
        elif r.has_errors:
            text += " err"
        if r.manual_pending:
            text += f" +{fmt(r.manual_pending)}m"
        cells.setdefault(clean(r.student_id), {})[(r.assignment, r.notebook)] = text
    width = max([len("student")] + [len(s) for s in cells]) + 2
    colw = [max(len(c[1]), 16) + 2 for c in columns]
    stream.write("student".ljust(width) + "".join(c[1].ljust(w) for c, w in zip(columns, colw)) + "\n")
    for sid in sorted(cells):
        stream.write(sid.ljust(width) + "".join(cells[sid].get(c, "-").ljust(w) for c, w in zip(columns, colw)) + "\n")
