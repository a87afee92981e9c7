"""Turn an LMS download (a flat folder or a .zip of files named after the students) into nbgrader's layout.

``python -m grading collect DOWNLOAD --into SUBMITTED [--pattern REGEX] [--assignment ID] [--dry-run]``

Each ``.ipynb`` / ``.py`` file found in DOWNLOAD (sub-folders included, so Moodle's
one-folder-per-student downloads work too) is copied, never moved or changed, to
``SUBMITTED/<student_id>/<assignment>/<notebook>.<ext>``:

* **notebook**: recognised by its content (its locked and answer cells,
  :mod:`grading.intake.identify`), else the course notebook whose name (file stem) appears in the
  file name, ignoring case and punctuation (``Copy of Scoring Functions (1).ipynb`` ->
  ``scoring_functions``; the longest name wins).  A file named like one notebook that holds another
  is collected as what it holds, and reported.  ``--assignment`` restricts the candidates (an
  unknown id is an error that lists the valid ones).
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
* several files for the same student and notebook (attempts): the latest is kept, ordered by
  what the LMS writes into names, in this order: Canvas's submission (attachment) id, then its
  ``-N`` resubmission suffix; an attempt number (``attempt_2``); a date-time in the name (Moodle,
  Blackboard); then the file time (kept from the zip).  An ``.ipynb`` beats a ``.py`` of the same
  attempt.  When those disagree, or nothing tells two files apart, the choice is reported as
  AMBIGUOUS or TIE (never silently); every choice and its reason is listed (``--dry-run`` too).
* safety: nothing is written outside ``--into`` (resolved paths are checked); symlinks are
  skipped; ids that are dots are refused; a zip's entry count and total size are checked before
  anything is extracted, and only notebooks and scripts are extracted; two different students
  whose ids clean to the same id are both left out and reported, never merged.
* names: the student's name as the LMS wrote it (Moodle's ``Jane Smith``, Canvas's ``smithjane``)
  goes into ``SUBMITTED/roster.csv`` (``student_id,name``; names already there are kept, so a
  corrected one stays); autograde puts them into the gradebook, and ``export --format
  canvas|moodle`` writes them in the name columns.
* collecting again into a folder that already holds submissions (a later download, late work): a
  file that is already there unchanged is left alone; one that is newer than the download's
  attempt is kept and reported (CHECK); an older one is replaced and moved aside to
  ``SUBMITTED/.replaced/``, never deleted.
* errors (:class:`CollectError`, exit 2): an unknown ``--assignment``, a download that is neither a
  folder nor a readable zip (e.g. truncated), ``--into`` naming a file, a zip over the limits.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grading import course, text
from grading.intake import identify
from grading.intake.discover import HANDED_IN

SUFFIXES = (".ipynb", ".py")
ZIP_MAX_ENTRIES = 20_000
ZIP_MAX_BYTES = 4 * 1024**3  # uncompressed, all notebooks and scripts together
ZIP_MAX_FILE = 256 * 1024**2  # one file
SKIP_PARTS = (".ipynb_checkpoints", "__MACOSX")
_BLACKBOARD_RECEIPT = re.compile(r"_attempt_[\d-]+\.txt$", re.IGNORECASE)


def _not_a_hand_in(name: str) -> bool:
    """Files an operating system or the LMS itself puts next to hand-ins: hidden files (.DS_Store), Windows'
    Thumbs.db and desktop.ini, Blackboard's receipt (<assignment>_<user>_attempt_<date-time>.txt)."""
    return name.startswith(".") or name.lower() in ("thumbs.db", "desktop.ini") or bool(_BLACKBOARD_RECEIPT.search(name))

# An LMS's own naming scheme: the id in it is the LMS's.  Around it are texts the student chose: the name in
# the profile (Moodle: "Mallory 22222_33333_assignsubmission_...") and the uploaded file's name.
LMS_RULES: list[tuple[str, re.Pattern]] = [
    ("Moodle", re.compile(r"(?:^|/)(?P<name>[^/]*?)_(?P<student>\d+)_assignsubmission_")),
    ("Canvas", _CANVAS_ID := re.compile(r"^(?P<name>[^_/]+)(?:_LATE)?_(?P<student>\d+)_\d+_")),
    ("Blackboard", re.compile(r"^(?:[^/]*?_)?(?P<student>[^_/]+)_attempt_")),
]
# Every place in a name where a scheme could read an id: the LMS writes one; a second one is the student's own text
# (a profile named "Mallory_22222_assignsubmission_x", an uploaded file named "x_11111_assignsubmission_..."), and
# which is which cannot be told from the name.
_MOODLE_IDS = re.compile(r"_(\d+)_assignsubmission_")
_BLACKBOARD_IDS = re.compile(r"(?:^|_)([^_/]+)_attempt_")


def lms_ids(relpath: str) -> set[str]:
    """Every id an LMS scheme could read from ``relpath`` (Moodle: in the first part of the path that has its
    scheme; Canvas and Blackboard: in the first part)."""
    parts = relpath.split("/")
    moodle = next((part for part in parts if _MOODLE_IDS.search(part)), "")
    ids = {m.group(1) for m in _MOODLE_IDS.finditer(moodle)} | {m.group(1) for m in _BLACKBOARD_IDS.finditer(parts[0])}
    canvas = _CANVAS_ID.match(relpath)
    if canvas:
        ids.add(canvas.group("student"))
    return {clean_id(i) for i in ids} - {""}


# Only for names that follow no LMS scheme (a folder of files named by hand).
OTHER_RULES: list[tuple[str, re.Pattern]] = [
    ("number", re.compile(r"(?<![A-Za-z0-9-])(?P<student>\d{4,})(?![A-Za-z0-9-])")),
    ("name - file", re.compile(r"^(?P<student>[^/]+?)\s+-\s+")),
]
_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[-_T ](\d{2})[-:](\d{2})(?:[-:](\d{2}))?)?")
_CANVAS = re.compile(r"^[^_/]+_(?P<late>LATE_)?\d+_(?P<sub>\d+)_")
_CANVAS_SUFFIX = re.compile(r"-(\d{1,3})\.(?:ipynb|py)$", re.IGNORECASE)
_ATTEMPT = re.compile(r"attempt[ _-]?(\d{1,3})(?![\d-])", re.IGNORECASE)


class CollectError(ValueError):
    """Bad usage or a download that cannot be read (exit 2); the message says which and why."""


def _norm(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", value.lower())


def clean_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw.strip()).strip("_")


def valid_id(student: str) -> bool:
    """A usable folder name: not empty, not only dots, no path separators."""
    return bool(student) and not re.fullmatch(r"\.+", student) and "/" not in student and "\\" not in student


def _match(relpath: str, pattern: re.Pattern | None) -> tuple[str | None, str, str]:
    """(student id or None, the rule that matched, the raw identity: name and id as written)."""
    if pattern is not None:
        m = pattern.search(relpath)
        return (clean_id(m.group("student")) if m else None), "--pattern", (m.group(0) if m else "")
    # A name that follows an LMS's scheme takes its id from that scheme, never from a bare number or a
    # "name - file" inside it (the student chose the profile name, "Mallory 22222", and the file name); a name
    # from which the schemes read two ids goes to no one.  Among matches of one id, the first to end wins.
    several = lms_ids(relpath)
    if len(several) > 1:
        return None, "ambiguous", ", ".join(sorted(several))
    for rules in (LMS_RULES, OTHER_RULES):
        found = [(m.end("student"), order, label, m) for order, (label, rule) in enumerate(rules)
                 if (m := rule.search(relpath)) and clean_id(m.group("student"))]
        if found:
            _end, _order, label, m = min(found, key=lambda f: f[:2])
            name = m.groupdict().get("name") or ""
            return clean_id(m.group("student")), label, f"{name.strip()}|{m.group('student').strip()}"
    return None, "", ""


def student_of(relpath: str, pattern: re.Pattern | None = None) -> tuple[str | None, str]:
    """(student id or None, the rule that matched)."""
    student, rule, _ = _match(relpath, pattern)
    return student, rule


def notebook_of(filename: str, candidates: list[course.Notebook]) -> course.Notebook | None:
    stem = _norm(Path(filename).stem)
    matches = [nb for nb in candidates if _norm(nb.name) and _norm(nb.name) in stem]
    if not matches:
        return None
    return max(matches, key=lambda nb: len(_norm(nb.name)))


# ---------------------------------------------------------------------------------------------
# attempts


@dataclass(frozen=True)
class Attempt:
    path: Path
    rel: str

    @functools.cached_property
    def evidence(self) -> list[tuple[str, object]]:
        """(what, value) in order of trust; None where the name does not tell."""
        name = PurePosixPath(self.rel).name
        canvas = _CANVAS.match(name)
        suffix = _CANVAS_SUFFIX.search(name) if canvas else None
        attempt = _ATTEMPT.search(self.rel)
        stamp = None
        for m in _DATETIME.finditer(self.rel):
            stamp = tuple(int(g or 0) for g in m.groups())
        return [
            ("Canvas submission id", int(canvas.group("sub")) if canvas else None),
            ("Canvas resubmission number", int(suffix.group(1)) if suffix else (0 if canvas else None)),
            ("attempt number", int(attempt.group(1)) if attempt else None),
            ("date-time in the name", stamp),
        ]

    @property
    def mtime(self) -> float:
        return self.path.stat().st_mtime


def _describe(value) -> str:
    if isinstance(value, tuple):
        y, mo, d, h, mi, sec = value
        return f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{sec:02d}"
    return str(value)


@dataclass
class Choice:
    kept: Attempt
    dropped: list[Attempt]
    reasons: list[str]
    doubt: str | None = None  # "AMBIGUOUS" or "TIE" when the order is not clear


def _compare(a: Attempt, b: Attempt) -> tuple[int, str, str | None]:
    """(>0 when ``a`` is later, <0 when ``b`` is, the reason, a doubt or None)."""
    verdicts = []
    for (what, va), (_, vb) in zip(a.evidence, b.evidence):
        if va is not None and vb is not None and va != vb:
            verdicts.append((1 if va > vb else -1, f"{what} {_describe(max(va, vb))} > {_describe(min(va, vb))}"))
    if verdicts:
        sign, reason = verdicts[0]
        if any(s != sign for s, _ in verdicts[1:]):
            other = next(r for s, r in verdicts[1:] if s != sign)
            return sign, reason, f"AMBIGUOUS: {reason}, but {other}; kept by the first"
        return sign, reason, None
    ta, tb = a.mtime, b.mtime
    if abs(ta - tb) >= 2:  # zip keeps times to 2 s
        later = max(ta, tb)
        return (1 if ta > tb else -1), f"file time {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(later))} is later", None
    ia, ib = a.path.suffix.lower() == ".ipynb", b.path.suffix.lower() == ".ipynb"
    if ia != ib:
        return (1 if ia else -1), "an .ipynb beats a .py of the same attempt", None
    sign = 1 if a.rel > b.rel else -1
    return sign, "nothing in the names or file times orders them", "TIE: kept the last by name; check it"


def choose(attempts: list[Attempt]) -> Choice:
    """The latest of several attempts, and why."""
    best, reasons, doubts = attempts[0], [], []
    for other in attempts[1:]:
        sign, reason, doubt = _compare(other, best)
        loser = best if sign > 0 else other
        if sign > 0:
            best = other
        reasons.append(f"{reason} (left out {loser.rel})")
        if doubt:
            doubts.append(doubt)
    dropped = [a for a in attempts if a is not best]
    return Choice(best, dropped, reasons, "; ".join(doubts) or None)


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class Plan:
    copies: dict[tuple[str, str, str], tuple[Path, str]] = field(default_factory=dict)  # key -> (file, relpath)
    unmatched: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # attempts: what was kept and why
    doubtful: list[str] = field(default_factory=list)  # AMBIGUOUS / TIE choices
    wrong: list[str] = field(default_factory=list)  # files named like one notebook holding another
    collisions: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # student id -> name as the LMS wrote it
    misnamed: dict[str, dict] = field(default_factory=dict)  # relpath -> what discovery needs to report it (HANDED_IN)


def _files(download: Path, others: list[str] | None = None) -> list[Path]:
    """Notebooks and scripts under ``download``; other hand-ins go to ``others`` (relative paths)."""
    found = []
    for folder, dirs, files in os.walk(download, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_PARTS and not (Path(folder) / d).is_symlink())
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            if path.suffix.lower() in SUFFIXES:
                found.append(path)
            elif others is not None and not _not_a_hand_in(name):
                others.append(path.relative_to(download).as_posix())
    return found


def check_assignment(assignment: str | None) -> None:
    if assignment and assignment not in course.assignments():
        raise CollectError(f"unknown assignment id `{assignment}`; valid: {', '.join(course.assignments())}")


def plan(download: Path, pattern: str | None = None, assignment: str | None = None,
         roster: dict[str, str] | None = None) -> Plan:
    regex = re.compile(pattern) if pattern else None
    if regex is not None and "student" not in regex.groupindex:
        raise ValueError("--pattern needs a named group `student`, e.g. '(?P<student>\\d+)_'")
    check_assignment(assignment)
    candidates = course.notebooks(assignment) if assignment else course.notebooks()
    result = Plan()
    download = Path(download)
    groups: dict[tuple[str, str, str], list[Attempt]] = {}
    identities: dict[str, dict[str, str]] = {}  # student id -> raw identity -> first file
    others: list[str] = []
    for path in _files(download, others):
        rel = path.relative_to(download).as_posix()
        by_name = notebook_of(path.name, candidates) or notebook_of(rel, candidates)
        match = identify.identify(path)
        nb = by_name
        if match is not None and match.notebook != by_name:
            if match.notebook not in candidates:
                result.unmatched.append(f"{rel}: holds {match.notebook.assignment}/{match.notebook.name}, "
                                        f"not a notebook of --assignment {assignment}")
                continue
            if by_name is None:
                result.wrong.append(f"{rel}: no notebook name in the file name; recognised by its content ({match.describe()})")
            else:
                result.wrong.append(f"{rel}: named like {by_name.name} but holds {match.notebook.name} "
                                    f"({match.describe()}): collected as {match.notebook.name}")
                named = f"{by_name.assignment}/{by_name.name}"
                result.misnamed[rel] = {"named": named, "file": path.name,
                                        "why": identify.wrong_reason(path.name, match.notebook, by_name.name, match.describe(), False),
                                        "note": identify.graded_as_note(named, path.name, match.notebook)}
            nb = match.notebook
        if nb is None:
            result.unmatched.append(f"{rel}: no course notebook name in the file name, and its content is not a course notebook")
            continue
        student, rule, identity = _match(rel, regex)
        if rule == "ambiguous":
            result.unmatched.append(f"{rel}: the name holds several student ids ({identity}), some of it chosen by the "
                                    "student: not collected (rename it, or use --pattern with a group `student`)")
            continue
        if not student:
            result.unmatched.append(f"{rel}: no student id found (use --pattern with a group `student`)")
            continue
        if not valid_id(student):
            result.unmatched.append(f"{rel}: `{student}` is not a usable student id")
            continue
        identities.setdefault(student, {}).setdefault(identity or student, rel)
        name = text.one_line(identity.partition("|")[0], 100) if identity else ""  # no control or bidi characters
        if name and name != student:
            result.names.setdefault(student, name)
        groups.setdefault((student, nb.assignment, nb.name), []).append(Attempt(path, rel))
    for rel in others:
        result.unmatched.append(f"{rel}: not a notebook (.ipynb) or Colab script (.py); ask the student for the notebook")
    clashing = {sid for sid, ids in identities.items() if len(ids) > 1}
    for sid in sorted(clashing):
        shown = "; ".join(f"`{raw.replace('|', ' ').strip()}` ({rel})" for raw, rel in identities[sid].items())
        result.collisions.append(f"{sid}: different students map to this id: {shown}; none collected (rename one "
                                 "file so that the ids differ, or collect with a --pattern that matches every file)")
    for sid in clashing:
        result.names.pop(sid, None)
    return _choose_attempts(result, groups, clashing, identities, roster or {})


def _choose_attempts(result: Plan, groups, clashing: set[str], identities, roster: dict[str, str]) -> Plan:
    """The attempt kept per student and notebook.  A student id whose name differs from the one already in
    the roster (another collection, another LMS) is a collision too: nothing of it is copied."""
    for sid, name in list(result.names.items()):
        known = roster.get(sid)
        if known and not same_person(known, name) and sid not in clashing:
            clashing.add(sid)
            first = next(iter(identities[sid].values()))
            result.collisions.append(f"{sid}: `{name}` ({first}) has the id of `{known}` in roster.csv (an earlier collection); "
                                     "not collected: check which student this is, then rename the file or fix roster.csv")
            result.names.pop(sid, None)
    for key, attempts in sorted(groups.items()):
        if key[0] in clashing:
            continue
        if len(attempts) == 1:
            result.copies[key] = (attempts[0].path, attempts[0].rel)
            continue
        choice = choose(attempts)
        result.copies[key] = (choice.kept.path, choice.kept.rel)
        line = f"{key[0]}/{key[2]}: kept {choice.kept.rel}: " + "; ".join(choice.reasons)
        result.replaced.append(line)
        if choice.doubt:
            result.doubtful.append(f"{key[0]}/{key[2]}: {choice.doubt}")
    return result


# ---------------------------------------------------------------------------------------------
# reading a zip safely


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _copy_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> None:
    """Copy one entry, stopping at its declared size (a lying header cannot make it larger)."""
    with z.open(info) as src, open(target, "wb") as out:
        left = info.file_size + 1
        while chunk := src.read(min(1 << 20, left)):
            out.write(chunk)
            left -= len(chunk)
            if left <= 0:
                raise CollectError(f"{archive}: {info.filename} is larger than its header says: not extracted")


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Extract the notebooks and scripts of ``archive`` into ``dest``; returns what was skipped.

    Limits are checked on the central directory before anything is written, and again while
    reading (a lying size stops the copy).  File times are kept (attempts are ordered by them).
    """
    skipped = []
    try:
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            if len(infos) > ZIP_MAX_ENTRIES:
                raise CollectError(f"{archive} has {len(infos)} entries (limit {ZIP_MAX_ENTRIES}): not extracted")
            wanted = []
            for info in infos:
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir():
                    continue
                if _is_symlink(info):
                    skipped.append(f"{info.filename}: a symbolic link")
                    continue
                if any(p in SKIP_PARTS for p in parts) or _not_a_hand_in(parts[-1]):  # resource forks, checkpoints, .DS_Store
                    continue
                if not info.filename.lower().endswith(SUFFIXES):
                    kind = "a zip inside the zip: extract it and collect its folder" if info.filename.lower().endswith(".zip") \
                        else "not a notebook (.ipynb) or Colab script (.py); ask the student for the notebook"
                    skipped.append(f"{info.filename}: {kind}")
                    continue
                if info.filename.startswith("/") or ".." in parts or any(":" in p for p in parts[:1]):
                    skipped.append(f"{info.filename}: a path outside the archive")
                    continue
                if info.file_size > ZIP_MAX_FILE:
                    skipped.append(f"{info.filename}: {info.file_size} bytes (limit {ZIP_MAX_FILE})")
                    continue
                wanted.append(info)
            total = sum(i.file_size for i in wanted)
            if total > ZIP_MAX_BYTES:
                raise CollectError(f"{archive} would extract to {total} bytes (limit {ZIP_MAX_BYTES}): not extracted")
            root = dest.resolve()
            for info in wanted:
                target = (root / info.filename.replace("\\", "/")).resolve()
                if not target.is_relative_to(root):
                    skipped.append(f"{info.filename}: a path outside the archive")
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    _copy_entry(z, info, target, archive)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
                    # one damaged, encrypted or oddly compressed entry: the others are still collected
                    target.unlink(missing_ok=True)
                    why = "encrypted (a password-protected zip)" if "encrypted" in str(exc) else text.clean(str(exc))[:120]
                    skipped.append(f"{info.filename}: unreadable in the zip ({why}); ask the student for it again")
                    continue
                with contextlib.suppress(OverflowError, ValueError, OSError):  # a damaged date keeps the extraction time
                    stamp = time.mktime((*info.date_time, 0, 0, -1))
                    os.utime(target, (stamp, stamp))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error) as exc:
        raise CollectError(f"{archive} is not a readable zip ({exc}); download it again") from exc
    return skipped


ROSTER = "roster.csv"  # inside --into: student id, name as the LMS wrote it; autograde puts the names into the gradebook
REPLACED = ".replaced"  # inside --into: earlier collections' copies that a newer attempt replaced


def _when(path: Path) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))


def _against_existing(incoming: Path, existing: list[Path]) -> str:
    """What to do with a file already collected for the same student and notebook.

    "new": nothing there yet, or what is there is older (or a link): replace it; "same": the same bytes;
    "older": what is there is newer than ``incoming`` (file times, 2 s apart at least): keep it.
    """
    files = [p for p in existing if p.is_file() and not p.is_symlink()]
    if not files:
        return "new"
    if any(p.suffix == incoming.suffix.lower() and p.read_bytes() == incoming.read_bytes() for p in files):
        return "same"
    newest = max(p.stat().st_mtime for p in files)
    return "older" if newest - incoming.stat().st_mtime >= 2 else "new"


def read_roster(into: Path) -> dict[str, str]:
    """student id -> name from ``INTO/roster.csv`` (empty when there is none)."""
    path = Path(into) / ROSTER
    if not path.is_file():
        return {}
    with contextlib.suppress(OSError, UnicodeDecodeError, csv.Error):
        with open(path, newline="", encoding="utf-8") as f:
            return {row["student_id"]: row["name"] for row in csv.DictReader(f) if row.get("student_id") and row.get("name")}
    return {}


def _letters(name: str) -> str:
    """A name's letters, accents removed, sorted: Canvas's ``smithjane`` and Moodle's ``Jane Smith`` agree."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", name.casefold())
    return "".join(sorted(c for c in plain if c.isalpha() and not unicodedata.combining(c)))


def same_person(a: str, b: str) -> bool:
    return _letters(a) == _letters(b)


def _write_roster(into: Path, names: dict[str, str]) -> None:
    """Add the names found to ``INTO/roster.csv``.  Names already there (perhaps corrected by hand) are kept,
    except that a name written as words replaces the same letters run together (``smithjane`` -> ``Jane Smith``)."""
    merged = dict(names)
    for sid, old in read_roster(into).items():
        new = names.get(sid)
        merged[sid] = new if new and " " not in old.strip() and " " in new.strip() and same_person(old, new) else old
    if not merged:
        return
    with open(Path(into) / ROSTER, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "name"])
        writer.writerows(sorted(merged.items()))


ISSUES = ".collect-issues.json"  # inside --into: what the last collect left out and why (autograde's report repeats it)


def _record_issues(into: Path, result: Plan, skipped: list[str]) -> None:
    lines = ([f"id collision: {x}" for x in result.collisions] + [f"not collected: {x}" for x in result.unmatched]
             + [f"skipped in the zip: {x}" for x in skipped] + [f"CHECK attempts: {x}" for x in result.doubtful])
    Path(into).mkdir(parents=True, exist_ok=True)
    (Path(into) / ISSUES).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "issues": lines}, indent=1) + "\n",
                                     encoding="utf-8")


def read_issues(into: Path) -> list[str]:
    """What the last collect into ``into`` left out or doubted, in its words (empty when none was recorded)."""
    try:
        data = json.loads((Path(into) / ISSUES).read_text(encoding="utf-8"))
        return [str(x)[:500] for x in data.get("issues", [])][:500]
    except (OSError, ValueError, AttributeError):
        return []


def _record_misnamed(into: Path, result: Plan) -> None:
    """``<student>/.handed-in.json``: the files collected under the notebook they hold, for autograde's report."""
    per_student: dict[str, dict] = {}
    for (student, aid, name), (_path, rel) in result.copies.items():  # None: this notebook now comes from a rightly named file
        per_student.setdefault(student, {})[f"{aid}/{name}"] = result.misnamed.get(rel)
    for student, entries in per_student.items():
        record = Path(into) / student / HANDED_IN
        if not record.resolve().is_relative_to(Path(into).resolve()):
            continue
        old = {}
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
        merged = {k: v for k, v in {**(old if isinstance(old, dict) else {}), **entries}.items() if v}
        if merged:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
        elif record.is_file():
            record.unlink()


def collect(download: Path, into: Path, pattern: str | None = None, assignment: str | None = None,
            dry_run: bool = False, log=print) -> int:
    """Copy the files; return the number of submissions collected.  Raises CollectError (exit 2)."""
    say = log

    def log(message: str) -> None:  # every line quotes names that students chose
        say(text.line(message))

    download, into = Path(download), Path(into)
    check_assignment(assignment)
    if into.exists() and not into.is_dir():
        raise CollectError(f"--into {into} is a file, not a folder: name a folder (it is created if missing)")
    tmp = None
    skipped: list[str] = []
    if download.is_file():
        if not zipfile.is_zipfile(download):
            raise CollectError(f"{download} is not a zip file (truncated, or another format): download it again, "
                               "or pass the folder you extracted it to")
        tmp = tempfile.TemporaryDirectory(prefix="attn-collect-")
        skipped = safe_extract(download, Path(tmp.name))
        download = Path(tmp.name)
    elif not download.is_dir():
        raise CollectError(f"{download} is neither a folder nor a zip file")
    try:
        result = plan(download, pattern, assignment, read_roster(into))
        root = into.resolve()
        n = 0
        for (student, aid, name), (path, rel) in sorted(result.copies.items()):
            target = into / student / aid / f"{name}{path.suffix.lower()}"
            if not target.resolve().is_relative_to(root):
                result.unmatched.append(f"{rel}: would be written outside {into}; not collected")
                continue
            existing = [p for p in (target.with_suffix(".ipynb"), target.with_suffix(".py")) if p.exists() or p.is_symlink()]
            verdict = _against_existing(path, existing)
            if verdict == "same":
                log(f"{rel} -> {target} (already there, unchanged)")
                n += 1
                continue
            if verdict == "older":
                kept = existing[0]
                line = (f"{student}/{name}: kept {kept} from an earlier collection, which is newer than {rel} "
                        f"(file times {_when(kept)} and {_when(path)}); nothing copied")
                result.doubtful.append(line)
                continue
            log(f"{rel} -> {target}" + (f" (replaces {', '.join(p.name for p in existing)}; the old copy is kept in "
                                        f"{into / REPLACED})" if existing else ""))
            n += 1
            if not dry_run:
                target.parent.mkdir(parents=True, exist_ok=True)
                for old in existing:  # a previous collection's copy: moved aside, never lost
                    if old.is_symlink():
                        old.unlink()
                        continue
                    aside = into / REPLACED / student / aid / f"{old.name}.{time.strftime('%Y%m%d-%H%M%S')}"
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    old.replace(aside)
                shutil.copy2(path, target)
        if not dry_run:
            _record_misnamed(into, result)
            _record_issues(into, result, skipped)
        if not dry_run and n:
            _write_roster(into, {sid: name for sid, name in result.names.items() if any(k[0] == sid for k in result.copies)})
        for line in result.replaced:
            log(f"attempts: {line}")
        for line in result.doubtful:
            log(f"CHECK attempts: {line}")
        for line in result.wrong:
            log(f"wrong notebook: {line}")
        for line in result.collisions:
            log(f"id collision: {line}")
        for line in skipped:
            log(f"skipped in the zip: {line}")
        for line in result.unmatched:
            log(f"not collected: {line}")
        students = len({k[0] for k in result.copies})
        log(f"{n} submission(s) from {students} student(s)"
            f"{' (dry run: nothing copied)' if dry_run else f' collected into {into}'}; {len(result.unmatched)} file(s) not collected"
            + (f"; {len(result.doubtful)} choice(s) of attempt to check (CHECK above)" if result.doubtful else "")
            + (f"; {len(result.collisions)} id collision(s)" if result.collisions else ""))
        return n
    finally:
        if tmp is not None:
            tmp.cleanup()
