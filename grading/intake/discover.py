"""Find the submissions of a class in nbgrader's layout: ``SUBMITTED/<student>/<assignment>/<notebook>``.

* a ``.py`` with the notebook's stem is accepted in place of the ``.ipynb``;
* a single file whose name merely contains the stem (``Copy of scoring_functions.ipynb``) is
  accepted when the exact name is missing;
* notebooks of a submitted assignment that a student did not hand in are listed as missing;
* ``collect`` records in ``<student>/.handed-in.json`` each file it moved to the notebook its content
  is (handed in under another notebook's name): the graded task carries that note, and the notebook
  it was handed in as gets the same "wrong notebook" row as when autograde finds the file itself;
* anything else is listed as ignored, with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from grading import course
from grading.model import GradeTask
from grading.options import GradeOptions

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


@dataclass
class Missing:
    student_id: str
    assignment: str
    notebook: str


@dataclass
class Misnamed:
    """A file handed in as (assignment, notebook) that collect filed under the notebook it holds."""

    student_id: str
    assignment: str
    notebook: str
    file: str
    why: str


HANDED_IN = ".handed-in.json"  # written by collect in a student's folder: {"<aid>/<nb>": {"note":, "named":, "why":, "file":}}


def _handed_in(student_dir: Path) -> dict[str, dict]:
    try:
        data = json.loads((student_dir / HANDED_IN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)} if isinstance(data, dict) else {}


@dataclass
class Discovery:
    tasks: list[GradeTask] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)  # notebooks of a submitted assignment not handed in
    ignored: list[str] = field(default_factory=list)  # files/folders that are not part of the course
    students: list[str] = field(default_factory=list)  # every student folder found (before --student)
    assignments: list[str] = field(default_factory=list)  # every assignment folder found (before --assignment)
    misnamed: list[Misnamed] = field(default_factory=list)  # collect's record of files filed under what they hold


def _read_timestamp(folder: Path) -> str | None:
    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        text = stamp.read_text(errors="replace").strip()
        return text or None
    return None


def discover(submitted: Path, options: GradeOptions, assignments: list[str] | None = None,
             students: list[str] | None = None) -> Discovery:
    found = Discovery()
    by_assignment: dict[str, list[course.Notebook]] = {}
    for nb in course.notebooks():
        by_assignment.setdefault(nb.assignment, []).append(nb)
    seen_assignments: set[str] = set()
    for student_dir in sorted(p for p in Path(submitted).iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")):
        if not STUDENT_ID.fullmatch(student_dir.name):  # it ends up in pages, file names and the gradebook
            found.ignored.append(f"{student_dir.name!r}: not a student id (letters, digits and . _ @ + - only)")
            continue
        found.students.append(student_dir.name)
        if students and student_dir.name not in students:
            continue
        record = _handed_in(student_dir)
        for entry in record.values():
            aid, _, nid = str(entry.get("named", "")).partition("/")
            if aid in by_assignment and any(nb.name == nid for nb in by_assignment[aid]) and (not assignments or aid in assignments):
                found.misnamed.append(Misnamed(student_dir.name, aid, nid, str(entry.get("file", ""))[:200], str(entry.get("why", ""))[:500]))
        for adir in sorted(p for p in student_dir.iterdir() if not p.name.startswith(".")):
            if not adir.is_dir() or adir.is_symlink():
                found.ignored.append(f"{adir}: not an assignment folder")
                continue
            if adir.name not in by_assignment:
                found.ignored.append(f"{adir}: unknown assignment `{adir.name}`")
                continue
            seen_assignments.add(adir.name)
            if assignments and adir.name not in assignments:
                continue
            files = [p for p in adir.iterdir() if p.is_file() and not p.is_symlink() and p.suffix.lower() in (".ipynb", ".py")]
            claimed: set[Path] = set()
            for nb in by_assignment[adir.name]:
                exact = [adir / f"{nb.name}.ipynb", adir / f"{nb.name}.py"]
                path = next((p for p in exact if p.is_file() and not p.is_symlink()), None)
                note = None
                if path is not None and exact[0].is_file() and exact[1].is_file():
                    note = f"both {nb.name}.ipynb and {nb.name}.py were handed in: graded the .ipynb"
                if path is None:
                    loose = [p for p in files if course.norm_name(nb.name) in course.norm_name(p.stem) and p not in claimed]
                    if len(loose) == 1:
                        path = loose[0]
                        note = f"file `{path.name}` graded as {nb.name}"
                if path is None:
                    found.missing.append(Missing(student_dir.name, adir.name, nb.name))
                    continue
                if note is None and isinstance(record.get(f"{adir.name}/{nb.name}", {}).get("note"), str):
                    note = record[f"{adir.name}/{nb.name}"]["note"][:300]
                claimed.update(p for p in exact if p.is_file())
                claimed.add(path)
                found.tasks.append(GradeTask(
                    student_dir.name, adir.name, nb.name, str(path.resolve()), str(nb.source),
                    options, _read_timestamp(adir), note,
                ))
            for p in files:
                if p not in claimed:
                    found.ignored.append(f"{p}: not a notebook of {adir.name}")
    found.assignments = sorted(seen_assignments)
    return found
