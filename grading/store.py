"""Finished results on disk (``OUT/results/<student>/<assignment>/<notebook>.json``), for resume.

A result is written last and atomically, after every other output of its submission: its presence
means the submission is done.  A rerun reuses it only while its fingerprint (the submitted file,
the source notebook, the options and the grader's own code and library versions) still matches, and never one of an infrastructure failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from grading.model import Failure, GradeTask, SubmissionResult
from grading.submission import fingerprint


class ResultStore:
    def __init__(self, out: Path) -> None:
        self.folder = Path(out) / "results"

    def path(self, key: tuple[str, str, str]) -> Path:
        sid, aid, nid = key
        return self.folder / sid / aid / f"{nid}.json"

    def save(self, result: SubmissionResult) -> None:
        path = self.path(result.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(result.to_dict(), indent=1))
        os.replace(partial, path)

    def finished(self, task: GradeTask) -> SubmissionResult | None:
        """The stored result of an earlier run, if it still applies to this task."""
        path = self.path(task.key)
        if not path.exists():
            return None
        try:
            old = SubmissionResult.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # unreadable: grade again
        if old.failure in (Failure.INFRASTRUCTURE, Failure.GRADER):
            return None  # not the student's doing: always tried again
        return old if old.fingerprint and old.fingerprint == fingerprint(task) else None
