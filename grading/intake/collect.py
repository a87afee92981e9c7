"""Turn an LMS download (a flat folder or a .zip of files named after the students) into nbgrader's layout.

``python -m grading collect DOWNLOAD --into SUBMITTED [--pattern REGEX] [--assignment ID] [--dry-run]``

Each ``.ipynb`` / ``.py`` file found in DOWNLOAD (sub-folders included, so Moodle's
one-folder-per-student downloads work too) is copied, never moved or changed, to
``SUBMITTED/<student_id>/<assignment>/<notebook>.<ext>``:

* **notebook**: the course notebook whose name (file stem) appears in the file name, ignoring
  case and punctuation (``Copy of Scoring Functions (1).ipynb`` -> ``scoring_functions``); the
  longest name wins; ``--assignment`` restricts the candidates.
* **student id**: the named group ``student`` of ``--pattern`` (a Python regex searched in the
  file's path relative to DOWNLOAD), or else the first of these rules that matches:

  ==========================  ===============================================  =============
  LMS                          example                                          student id
  ==========================  ===============================================  =============
  Moodle                       ``Jane Smith_12345_assignsubmission_file_/x.py`` ``12345``
  Canvas                       ``smithjane_LATE_12345_678901_x.ipynb``          ``12345``
  any: a number of 4+ digits   ``smith_jane_12345_attempt_2026-11-20_x.ipynb``  ``12345``
  "name - file" (Teams, GC)    ``jsmith - scoring_functions.py``                ``jsmith``
  Blackboard                   ``HW1_jsmith_attempt_2026-11-20-10-33_x.ipynb``  ``jsmith``
  ==========================  ===============================================  =============

  (dates such as ``2026-11-20`` never count as ids).  Files matching no rule are listed and left
  out.  Ids are kept as found, with characters other than letters, digits, ``.``, ``_`` and ``-``
  replaced by ``_``.
* several files for the same student and notebook (attempts): the newest is kept (by the
  date-time in its name when there is one, else its modification time); an ``.ipynb`` beats a
  ``.py`` of the same attempt.  Everything is listed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grading import course

RULES: list[tuple[str, re.Pattern]] = [
    ("Moodle", re.compile(r"_(?P<student>\d+)_assignsubmission_")),
    ("Canvas", re.compile(r"^[^_/]+(?:_LATE)?_(?P<student>\d+)_\d+_")),
    ("number", re.compile(r"(?<![A-Za-z0-9-])(?P<student>\d{4,})(?![A-Za-z0-9-])")),
    ("name - file", re.compile(r"^(?P<student>[^/]+?)\s+-\s+")),
    ("Blackboard", re.compile(r"^(?:[^/]*?_)?(?P<student>[^_/]+)_attempt_")),
]
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[-_T ](\d{2})[-:](\d{2})(?:[-:](\d{2}))?)?")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def clean_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw.strip()).strip("_")


def student_of(relpath: str, pattern: re.Pattern | None = None) -> tuple[str | None, str]:
    """(student id or None, the rule that matched)."""
    if pattern is not None:
        m = pattern.search(relpath)
        return (clean_id(m.group("student")) if m else None), "--pattern"
    name = relpath
    for label, rule in RULES:
        m = rule.search(name)
        if m and clean_id(m.group("student")):
            return clean_id(m.group("student")), label
    return None, ""


def notebook_of(filename: str, candidates: list[course.Notebook]) -> course.Notebook | None:
    stem = _norm(Path(filename).stem)
    matches = [nb for nb in candidates if _norm(nb.name) and _norm(nb.name) in stem]
    if not matches:
        return None
    return max(matches, key=lambda nb: len(_norm(nb.name)))


def _when(path: Path, relpath: str) -> tuple:
    m = None
    for m in _DATETIME.finditer(relpath):
        pass
    stamp = tuple(int(g or 0) for g in m.groups()) if m else ()
    return (stamp, path.stat().st_mtime, path.suffix.lower() == ".ipynb")


@dataclass
class Plan:
    copies: dict[tuple[str, str, str], tuple[Path, str]] = field(default_factory=dict)  # key -> (file, relpath)
    unmatched: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def plan(download: Path, pattern: str | None = None, assignment: str | None = None) -> Plan:
    regex = re.compile(pattern) if pattern else None
    if regex is not None and "student" not in regex.groupindex:
        raise ValueError("--pattern needs a named group `student`, e.g. '(?P<student>\\d+)_'")
    candidates = course.notebooks(assignment) if assignment else course.notebooks()
    result = Plan()
    files = sorted(p for p in Path(download).rglob("*") if p.is_file() and p.suffix.lower() in (".ipynb", ".py")
                   and ".ipynb_checkpoints" not in p.parts and "__MACOSX" not in p.parts)
    for path in files:
        rel = path.relative_to(download).as_posix()
        nb = notebook_of(path.name, candidates) or notebook_of(rel, candidates)
        if nb is None:
            result.unmatched.append(f"{rel}: no course notebook name in the file name")
            continue
        student, _ = student_of(rel, regex)
        if not student:
            result.unmatched.append(f"{rel}: no student id found (use --pattern with a group `student`)")
            continue
        key = (student, nb.assignment, nb.name)
        previous = result.copies.get(key)
        if previous is None:
            result.copies[key] = (path, rel)
        else:
            newer = _when(path, rel) > _when(previous[0], previous[1])
            keep, drop = ((path, rel), previous) if newer else (previous, (path, rel))
            result.copies[key] = keep
            result.replaced.append(f"{student}/{nb.name}: kept {keep[1]}, left out {drop[1]} (older)")
    return result


def collect(download: Path, into: Path, pattern: str | None = None, assignment: str | None = None,
            dry_run: bool = False, log=print) -> int:
    """Copy the files; return the number of submissions collected."""
    download = Path(download)
    tmp = None
    if download.is_file() and zipfile.is_zipfile(download):
        tmp = tempfile.TemporaryDirectory(prefix="attn-collect-")
        with zipfile.ZipFile(download) as z:
            z.extractall(tmp.name)
        download = Path(tmp.name)
    try:
        result = plan(download, pattern, assignment)
        into = Path(into)
        for (student, aid, name), (path, rel) in sorted(result.copies.items()):
            target = into / student / aid / f"{name}{path.suffix.lower()}"
            log(f"{rel} -> {target}")
            if not dry_run:
                target.parent.mkdir(parents=True, exist_ok=True)
                for other in (target.with_suffix(".ipynb"), target.with_suffix(".py")):
                    if other != target and other.exists():
                        other.unlink()  # a previous collection's other format of this notebook
                shutil.copy2(path, target)
        for line in result.replaced:
            log(f"attempts: {line}")
        for line in result.unmatched:
            log(f"not collected: {line}")
        log(f"{len(result.copies)} submission(s) from {len({k[0] for k in result.copies})} student(s)"
            f"{' (dry run: nothing copied)' if dry_run else f' collected into {into}'}; {len(result.unmatched)} file(s) not collected")
        return len(result.copies)
    finally:
        if tmp is not None:
            tmp.cleanup()
