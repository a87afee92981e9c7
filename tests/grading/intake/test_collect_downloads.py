"""collect as an instructor meets it: LMS zips with resubmissions, wrong notebooks, bad input, hostile archives.

No kernels: fast.  The notebooks handed in are the released ones (their content identifies them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile

import pytest

from grading import course
from grading.intake.collect import CollectError, collect, plan
from grading.tools import synthetic

NB1, NB2 = course.notebooks()[0], course.notebooks()[1]
ROOT = course.root()


def nb_bytes(nb, kind="complete") -> bytes:
    return synthetic.submission(nb, kind)[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def write_zip(path, entries: dict[str, tuple[bytes, tuple]]):
    with zipfile.ZipFile(path, "w") as z:
        for name, (data, when) in entries.items():
            info = zipfile.ZipInfo(name, date_time=when)
            z.writestr(info, data)
    return path


def test_canvas_late_resubmission_wins_over_the_first_attempt(tmp_path):
    first, late = nb_bytes(NB1, "partial"), nb_bytes(NB1, "complete")
    archive = write_zip(tmp_path / "canvas.zip", {  # the same file time: only the names tell
        f"doejohn_22222_800001_{NB1.name}.ipynb": (first, (2026, 11, 20, 10, 0, 0)),
        f"doejohn_LATE_22222_800099_{NB1.name}_-1.ipynb": (late, (2026, 11, 20, 10, 0, 0)),
    })
    lines = []
    assert collect(archive, tmp_path / "sub", log=lines.append) == 1
    assert (tmp_path / "sub" / "22222" / NB1.assignment / f"{NB1.name}.ipynb").read_bytes() == late
    assert any("Canvas submission id 800099 > 800001" in line for line in lines), lines


def test_moodle_final_beats_draft_by_the_zip_file_time(tmp_path):
    draft, final = nb_bytes(NB1, "partial"), nb_bytes(NB1, "complete")
    folder = "Jane Smith_12345_assignsubmission_file_"
    archive = write_zip(tmp_path / "moodle.zip", {
        f"{folder}/{NB1.name}_FINAL.ipynb": (final, (2026, 11, 21, 9, 30, 0)),
        f"{folder}/{NB1.name}_draft.ipynb": (draft, (2026, 11, 19, 8, 0, 0)),
    })
    lines = []
    collect(archive, tmp_path / "sub", log=lines.append)
    assert (tmp_path / "sub" / "12345" / NB1.assignment / f"{NB1.name}.ipynb").read_bytes() == final
    assert any("file time" in line and "_draft" in line for line in lines), lines


def test_a_tie_is_reported_and_dry_run_shows_the_choice(tmp_path):
    down = tmp_path / "down"
    down.mkdir()
    for name in (f"jsmith - {NB1.name} (1).ipynb", f"jsmith - {NB1.name} (2).ipynb"):
        (down / name).write_bytes(nb_bytes(NB1))
        os.utime(down / name, (1_700_000_000, 1_700_000_000))
    lines = []
    assert collect(down, tmp_path / "sub", dry_run=True, log=lines.append) == 1
    assert not (tmp_path / "sub").exists()
    assert any(line.startswith("CHECK attempts:") and "TIE" in line for line in lines), lines
    assert any(line.startswith("attempts:") and "kept" in line for line in lines)
    assert any("choice(s) of attempt to check" in line for line in lines)


def test_attempt_numbers_and_dates_order_attempts(tmp_path):
    down = tmp_path / "down"
    down.mkdir()
    old, new = nb_bytes(NB1, "partial"), nb_bytes(NB1, "complete")
    (down / f"HW1_jsmith_attempt_2026-11-21-10-33-12_{NB1.name}.ipynb").write_bytes(new)
    (down / f"HW1_jsmith_attempt_2026-11-20-10-33-12_{NB1.name}.ipynb").write_bytes(old)
    os.utime(down / f"HW1_jsmith_attempt_2026-11-21-10-33-12_{NB1.name}.ipynb", (1_600_000_000,) * 2)  # an older file time: names win
    collect(down, tmp_path / "sub", log=lambda *_: None)
    assert (tmp_path / "sub" / "jsmith" / NB1.assignment / f"{NB1.name}.ipynb").read_bytes() == new


def test_a_wrong_notebook_is_collected_as_what_it_holds(tmp_path):
    down = tmp_path / "down"
    down.mkdir()
    (down / f"jsmith - {NB1.name}.ipynb").write_bytes(nb_bytes(NB2))  # notebook 02 saved under 01's name
    (down / "ann - my homework.ipynb").write_bytes(nb_bytes(NB1))  # no notebook name at all
    lines = []
    assert collect(down, tmp_path / "sub", log=lines.append) == 2
    assert (tmp_path / "sub" / "jsmith" / NB2.assignment / f"{NB2.name}.ipynb").exists()
    assert not (tmp_path / "sub" / "jsmith" / NB1.assignment).exists()
    assert (tmp_path / "sub" / "ann" / NB1.assignment / f"{NB1.name}.ipynb").exists()
    assert any(line.startswith("wrong notebook:") and f"named like {NB1.name} but holds {NB2.name}" in line for line in lines), lines


def test_bad_usage_exits_2_with_the_reason(tmp_path):
    down = tmp_path / "down"
    down.mkdir()
    (down / f"jsmith - {NB1.name}.ipynb").write_bytes(nb_bytes(NB1))
    unknown = run_cli("collect", str(down), "--into", str(tmp_path / "s"), "--assignment", "01")
    assert unknown.returncode == 2 and "valid:" in unknown.stderr and NB1.assignment in unknown.stderr, unknown.stderr
    archive = write_zip(tmp_path / "lms.zip", {f"jsmith - {NB1.name}.ipynb": (nb_bytes(NB1), (2026, 1, 1, 0, 0, 0))})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    bad = run_cli("collect", str(truncated), "--into", str(tmp_path / "s"))
    assert bad.returncode == 2 and "not a zip" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    (tmp_path / "afile").write_text("x")
    into_file = run_cli("collect", str(down), "--into", str(tmp_path / "afile"))
    assert into_file.returncode == 2 and "is a file" in into_file.stderr and "Traceback" not in into_file.stderr


def test_hostile_zip_entries_never_leave_into(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"../../escape_12345_{NB1.name}.ipynb", nb_bytes(NB1))
        link = zipfile.ZipInfo(f"link_23456_{NB1.name}.ipynb")
        link.external_attr = (0o120777 << 16)
        z.writestr(link, "/etc/passwd")
        z.writestr("payload.sh", "rm -rf /")
        z.writestr(f"ok_34567_{NB1.name}.ipynb", nb_bytes(NB1))
    lines = []
    collect(archive, tmp_path / "into" / "sub", log=lines.append)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["evil.zip", "into/sub/.collect-issues.json", f"into/sub/34567/{NB1.assignment}/{NB1.name}.ipynb"], written
    assert any("symbolic link" in line for line in lines) and any("outside the archive" in line for line in lines)
    assert any("payload.sh: not a notebook" in line for line in lines), lines  # listed, not silently dropped
    issues = (tmp_path / "into" / "sub" / ".collect-issues.json").read_text()
    assert "symbolic link" in issues and "payload.sh" in issues  # autograde's report repeats them


def _damaged(path, kind: str, good: bytes, bad: bytes):
    """A zip of two notebooks whose second entry is damaged in one way an outside tester found: its deflated data
    corrupt, marked encrypted, or compressed by a method Python cannot read."""
    good_name, bad_name = f"smithjane_12345_1_{NB1.name}.ipynb", f"doejohn_22222_2_{NB1.name}.ipynb"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(good_name, good)
        z.writestr(bad_name, bad)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(bad_name)
    local = info.header_offset
    name = bad_name.encode()
    central = next(i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02" and data[i + 46:i + 46 + len(name)] == name)
    if kind == "corrupt":  # the middle of its compressed data
        start = local + 30 + len(bad_name)
        for i in range(start + 40, start + 80):
            data[i] ^= 0xFF
    elif kind == "encrypted":  # general purpose flag bit 0, in both headers
        data[local + 6] |= 1
        data[central + 8] |= 1
    else:  # compression method 99 (AES), in both headers
        data[local + 8:local + 10] = (99).to_bytes(2, "little")
        data[central + 10:central + 12] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["corrupt", "encrypted", "method"])
def test_a_damaged_entry_is_listed_and_the_others_are_collected(tmp_path, kind):
    archive = _damaged(tmp_path / f"{kind}.zip", kind, nb_bytes(NB1), nb_bytes(NB1, "partial"))
    proc = run_cli("collect", str(archive), "--into", str(tmp_path / "into"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (tmp_path / "into" / "12345" / NB1.assignment / f"{NB1.name}.ipynb").read_bytes() == nb_bytes(NB1)
    assert not (tmp_path / "into" / "22222").exists()  # nothing half-written for the damaged one
    said = proc.stdout + proc.stderr
    assert f"doejohn_22222_2_{NB1.name}.ipynb: unreadable in the zip" in said and "ask the student for it again" in said, said
    if kind == "encrypted":
        assert "password-protected" in said, said


def test_zip_limits_are_checked_before_extracting(tmp_path, monkeypatch):
    from grading.intake import collect as module

    archive = write_zip(tmp_path / "many.zip", {f"s{i}_1234{i}_{NB1.name}.ipynb": (b"{}", (2026, 1, 1, 0, 0, 0)) for i in range(5)})
    monkeypatch.setattr(module, "ZIP_MAX_ENTRIES", 3)
    with pytest.raises(CollectError, match="entries"):
        collect(archive, tmp_path / "sub", log=lambda *_: None)
    monkeypatch.setattr(module, "ZIP_MAX_ENTRIES", 100)
    monkeypatch.setattr(module, "ZIP_MAX_BYTES", 5)
    with pytest.raises(CollectError, match="bytes"):
        collect(archive, tmp_path / "sub", log=lambda *_: None)
    assert not (tmp_path / "sub").exists()


def test_symlinks_dot_ids_and_collisions(tmp_path):
    down = tmp_path / "down"
    down.mkdir()
    secret = tmp_path / "secret.ipynb"
    secret.write_bytes(nb_bytes(NB1))
    (down / f"link - {NB1.name}.ipynb").symlink_to(secret)
    (down / f".. - {NB1.name}.ipynb").write_bytes(nb_bytes(NB1))
    (down / f"j smith - {NB1.name}.ipynb").write_bytes(nb_bytes(NB1))
    (down / f"j_smith - {NB1.name}.ipynb").write_bytes(nb_bytes(NB1))
    lines = []
    result = plan(down)
    assert result.copies == {}
    assert any("`..` is not a usable student id" in line for line in result.unmatched)
    assert len(result.collisions) == 1 and "j_smith" in result.collisions[0] and "j smith" in result.collisions[0]
    collect(down, tmp_path / "sub", log=lines.append)
    assert not (tmp_path / "sub").exists() or not any((tmp_path / "sub").rglob("*.ipynb"))
    assert any(line.startswith("id collision:") for line in lines)


def test_timing_of_a_class_sized_zip(tmp_path):
    """60 students, two attempts each: collected in seconds."""
    entries = {}
    for i in range(60):
        entries[f"student{i}_{30000 + i}_{900000 + i}_{NB1.name}.ipynb"] = (nb_bytes(NB1, "partial"), (2026, 11, 20, 9, 0, 0))
        entries[f"student{i}_LATE_{30000 + i}_{990000 + i}_{NB1.name}-1.ipynb"] = (nb_bytes(NB1), (2026, 11, 20, 9, 0, 0))
    archive = write_zip(tmp_path / "class.zip", entries)
    start = time.perf_counter()
    assert collect(archive, tmp_path / "sub", log=lambda *_: None) == 60
    assert time.perf_counter() - start < 60
    assert (tmp_path / "sub" / "30007" / NB1.assignment / f"{NB1.name}.ipynb").read_bytes() == nb_bytes(NB1)


def test_collecting_again_never_replaces_a_newer_file_and_keeps_what_it_replaces(tmp_path):
    into = tmp_path / "sub"
    target = into / "22222" / NB1.assignment
    late = nb_bytes(NB1, "complete")
    first = write_zip(tmp_path / "later.zip", {f"doejohn_22222_800099_{NB1.name}.ipynb": (late, (2026, 11, 22, 10, 0, 0))})
    assert collect(first, into, log=lambda _: None) == 1
    # an older download (a Colab .py from before) collected into the same folder: the newer .ipynb stays
    suffix, older_py = synthetic.submission(NB1, "colab_py")
    assert suffix == ".py"
    old = tmp_path / "older"
    old.mkdir()
    (old / f"doejohn_22222_800001_{NB1.name}.py").write_bytes(older_py)
    os.utime(old / f"doejohn_22222_800001_{NB1.name}.py", (time.mktime((2026, 11, 20, 9, 0, 0, 0, 0, -1)),) * 2)
    lines = []
    assert collect(old, into, log=lines.append) == 0
    assert (target / f"{NB1.name}.ipynb").read_bytes() == late and not (target / f"{NB1.name}.py").exists()
    assert any("CHECK" in line and "newer than" in line for line in lines), lines
    # the same download again: unchanged, nothing moved
    lines = []
    assert collect(first, into, log=lines.append) == 1
    assert any("unchanged" in line for line in lines) and not (into / ".replaced").exists()
    # a newer attempt replaces it, and the replaced copy is kept aside (never lost, never graded)
    newest = nb_bytes(NB1, "partial")
    again = write_zip(tmp_path / "newest.zip", {f"doejohn_22222_800123_{NB1.name}.ipynb": (newest, (2026, 11, 23, 10, 0, 0))})
    lines = []
    assert collect(again, into, log=lines.append) == 1
    assert (target / f"{NB1.name}.ipynb").read_bytes() == newest
    aside = list((into / ".replaced" / "22222" / NB1.assignment).iterdir())
    assert len(aside) == 1 and aside[0].read_bytes() == late, aside
    assert any("replaces" in line for line in lines), lines


def test_names_from_the_lms_files_go_into_the_roster_and_corrections_stay(tmp_path):
    from grading.intake.collect import read_roster

    archive = write_zip(tmp_path / "moodle.zip", {
        f"Jane Smith_12345_assignsubmission_file_/{NB1.name}.ipynb": (nb_bytes(NB1), (2026, 11, 21, 9, 30, 0)),
        f"Li\x1b]0;pwn\x07 Wei_23456_assignsubmission_file_/{NB1.name}.ipynb": (nb_bytes(NB1), (2026, 11, 21, 9, 30, 0)),
    })
    into = tmp_path / "sub"
    collect(archive, into, log=lambda _: None)
    roster = read_roster(into)
    assert roster["12345"] == "Jane Smith" and "\x1b" not in roster["23456"] and "\x07" not in roster["23456"]
    (into / "roster.csv").write_text("student_id,name\n12345,Jane A. Smith\n")  # corrected by hand
    collect(archive, into, log=lambda _: None)
    assert read_roster(into)["12345"] == "Jane A. Smith" and "23456" in read_roster(into)


def test_non_notebooks_are_listed_and_a_known_id_with_another_name_is_a_collision(tmp_path):
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / f"kimsoo_44444_700001_{NB1.name}.html").write_text("<html>notebook exported as HTML</html>")
    (folder / f"doejohn_22222_700002_{NB1.name}.ipynb").write_bytes(nb_bytes(NB1))
    into = tmp_path / "sub"
    lines = []
    collect(folder, into, log=lines.append)
    assert any(f"kimsoo_44444_700001_{NB1.name}.html: not a notebook" in line for line in lines), lines
    # later, from another LMS: the same id with the letters of another name
    other = tmp_path / "moodle"
    (other / "Jose Alvarez_22222_assignsubmission_file_").mkdir(parents=True)
    (other / "Jose Alvarez_22222_assignsubmission_file_" / f"{NB2.name}.ipynb").write_bytes(nb_bytes(NB2, "blank"))
    lines = []
    collect(other, into, log=lines.append)
    assert any("id collision: 22222" in line and "doejohn" in line for line in lines), lines
    assert not (into / "22222" / NB2.assignment).exists()
    # the same student written as words (Moodle) after run together (Canvas): the roster gets the readable name
    same = tmp_path / "moodle2"
    (same / "John Doe_22222_assignsubmission_file_").mkdir(parents=True)
    (same / "John Doe_22222_assignsubmission_file_" / f"{NB2.name}.ipynb").write_bytes(nb_bytes(NB2))
    collect(same, into, log=lambda _: None)
    assert (into / "22222" / NB2.assignment / f"{NB2.name}.ipynb").exists()
    assert "22222,John Doe" in (into / "roster.csv").read_text()
