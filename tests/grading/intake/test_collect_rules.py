"""``python -m grading collect``: an LMS download becomes nbgrader's submitted layout."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from grading import course
from grading.intake.collect import collect, notebook_of, student_of

NB = course.notebooks()[0]  # any graded notebook; the names below are built from it
STEM = NB.name


@pytest.mark.parametrize(("relpath", "student"), [
    (f"smith_jane_12345_attempt_2026-11-20_{STEM}.ipynb", "12345"),  # integrator's example
    (f"jsmith - {STEM}.py", "jsmith"),  # Teams / Google Classroom style
    (f"smithjane_12345_6789012_{STEM}.ipynb", "12345"),  # Canvas
    (f"smithjane_LATE_12345_6789012_{STEM}-1.ipynb", "12345"),  # Canvas, late, renamed
    (f"Jane Smith_12345_assignsubmission_file_/{STEM}.ipynb", "12345"),  # Moodle folder
    (f"Jane Smith_12345_assignsubmission_file_{STEM}.ipynb", "12345"),  # Moodle flat
    (f"HW1_jsmith_attempt_2026-11-20-10-33-12_{STEM}.ipynb", "jsmith"),  # Blackboard
    (f"HW1_js12345_attempt_2026-11-20-10-33-12_{STEM}.ipynb", "js12345"),  # Blackboard, digits in the name
])
def test_default_rules_find_the_student(relpath, student):
    assert student_of(relpath)[0] == student


@pytest.mark.parametrize(("relpath", "student"), [
    # the file name a student uploads follows the LMS's own part of the name: it never decides the id
    (f"HW1_jsmith_attempt_2026-11-20-10-33-12_id 11111 {STEM}.ipynb", "jsmith"),  # a bare number
    (f"Jane Smith_12345_assignsubmission_file_/x_11111_assignsubmission_{STEM}.ipynb", "12345"),  # Moodle folder
    (f"Jane Smith_12345_assignsubmission_file_smithjane_11111_500_{STEM}.ipynb", "12345"),  # Moodle, posing as Canvas
    (f"jsmith - 11111 {STEM}.py", "jsmith"),
    # nor does the name in a student's profile, which Moodle and Canvas write into the name
    (f"Mallory 22222_33333_assignsubmission_file_/{STEM}.ipynb", "33333"),
    (f"Mallory 22222_33333_assignsubmission_file_{STEM}.ipynb", "33333"),
    (f"Mallory - 22222_33333_assignsubmission_file_/{STEM}.ipynb", "33333"),
])
def test_a_students_own_file_name_cannot_choose_the_id(relpath, student):
    assert student_of(relpath)[0] == student


@pytest.mark.parametrize("relpath", [
    # a second scheme's id in the student's own text: which one the LMS wrote cannot be told, so no one gets the file
    f"attackerc_33333_500004_x_11111_assignsubmission_{STEM}.ipynb",  # Canvas upload named like Moodle
    f"HW1_jsmith_attempt_2026-11-20-10-33-12_x_11111_assignsubmission_{STEM}.ipynb",  # Blackboard upload, the same
    f"Mallory_22222_assignsubmission_x_33333_assignsubmission_file_/{STEM}.ipynb",  # Moodle profile named like Moodle
    f"Eve_22222_1_x_33333_assignsubmission_file_/{STEM}.ipynb",  # ... like Canvas
    f"Zed_attempt_ x_55555_assignsubmission_file_/{STEM}.ipynb",  # ... like Blackboard
])
def test_a_name_with_two_ids_goes_to_no_one(relpath):
    assert student_of(relpath) == (None, "ambiguous")


def test_collect_gives_a_posing_upload_to_its_uploader(tmp_path):
    archive = tmp_path / "canvas.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"honestann_11111_500001_{STEM}.ipynb", "honest")
        z.writestr(f"attackerc_33333_500003_{STEM}.ipynb", "attacker, first upload")
        z.writestr(f"attackerc_33333_500004_x_11111_assignsubmission_{STEM}.ipynb", "poses as 11111")
        z.writestr(f"attackerc_33333_500005_y_44444_assignsubmission_{STEM}.ipynb", "poses as 44444")
    into, lines = tmp_path / "submitted", []
    collect(archive, into, log=lines.append)
    assert sorted(p.name for p in into.iterdir() if p.is_dir()) == ["11111", "33333"], lines
    assert (into / "11111" / NB.assignment / f"{STEM}.ipynb").read_text() == "honest"
    assert (into / "33333" / NB.assignment / f"{STEM}.ipynb").read_text() == "attacker, first upload"
    assert not any("collision" in line for line in lines), lines
    refused = [line for line in lines if line.startswith("not collected:") and "several student ids" in line]
    assert len(refused) == 2 and "(11111, 33333)" in refused[0] + refused[1], lines  # listed, for the instructor to decide


def test_no_rule_no_student():
    assert student_of(f"{STEM}.ipynb")[0] is None
    assert student_of("2026-11-20_notes.ipynb")[0] is None  # a date is not an id


def test_notebook_by_stem_ignoring_case_and_punctuation():
    pretty = STEM.replace("_", " ").title()
    assert notebook_of(f"Copy of {pretty} (1).ipynb", course.notebooks()) == NB
    assert notebook_of("unrelated.ipynb", course.notebooks()) is None


def _touch(path, text, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_collect_copies_without_touching_the_download(tmp_path):
    down, into = tmp_path / "download", tmp_path / "submitted"
    _touch(down / f"smith_jane_12345_attempt_2026-11-20-09-00-00_{STEM}.ipynb", "old attempt")
    _touch(down / f"smith_jane_12345_attempt_2026-11-21-09-00-00_{STEM}.ipynb", "new attempt")
    _touch(down / f"jsmith - {STEM}.py", "a py")
    _touch(down / "Jane Doe_777777_assignsubmission_file_" / f"Copy of {STEM}.ipynb", "moodle")
    _touch(down / "readme.txt", "not a notebook")
    _touch(down / "no id here.ipynb", "unmatched")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in down.rglob("*") if p.is_file()}
    lines = []
    n = collect(down, into, log=lines.append)
    assert n == 3
    assert (into / "12345" / NB.assignment / f"{STEM}.ipynb").read_text() == "new attempt"
    assert (into / "jsmith" / NB.assignment / f"{STEM}.py").read_text() == "a py"
    assert (into / "777777" / NB.assignment / f"{STEM}.ipynb").read_text() == "moodle"
    assert any("kept" in line and "left out" in line and "date-time in the name" in line for line in lines)
    assert any("no id here.ipynb" in line for line in lines if line.startswith("not collected"))
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in down.rglob("*") if p.is_file()} == before


def test_collect_pattern_zip_and_dry_run(tmp_path):
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"student-A17_{STEM}.ipynb", "a")
        z.writestr(f"student-B42_{STEM}.ipynb", "b")
    into = tmp_path / "submitted"
    assert collect(archive, into, pattern=r"student-(?P<student>[A-Z]\d+)_", dry_run=True, log=lambda *_: None) == 2
    assert not into.exists()
    collect(archive, into, pattern=r"student-(?P<student>[A-Z]\d+)_", log=lambda *_: None)
    assert (into / "A17" / NB.assignment / f"{STEM}.ipynb").read_text() == "a"
    with pytest.raises(ValueError):
        collect(archive, into, pattern=r"(\d+)", log=lambda *_: None)


def test_collect_command_line(tmp_path):
    down = tmp_path / "download"
    _touch(down / f"jsmith - {STEM}.py", "x")
    run = subprocess.run([sys.executable, "-m", "grading", "collect", str(down), "--into", str(tmp_path / "sub")],
                         cwd=course.root(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "sub" / "jsmith" / NB.assignment / f"{STEM}.py").exists()
    bad = subprocess.run([sys.executable, "-m", "grading", "collect", str(down), "--into", str(tmp_path / "s2"),
                          "--pattern", "(no group)"], cwd=course.root(), capture_output=True, text=True)
    assert bad.returncode == 2


def test_a_number_in_a_moodle_profile_name_takes_no_ones_place(tmp_path):
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"John Doe_22222_assignsubmission_file_/{STEM}.ipynb", "john")
        z.writestr(f"Mallory 22222_33333_assignsubmission_file_/{STEM}.ipynb", "mallory")  # her profile name holds his number
        z.writestr(f"Mal_22222_assignsubmission_x_33333_assignsubmission_file_/{STEM}.ipynb", "mallory again")
        z.writestr(f"Bidi\u202eevil_66666_assignsubmission_file_/{STEM}.ipynb", "bidi")
    into, lines = tmp_path / "submitted", []
    collect(archive, into, log=lines.append)
    assert (into / "22222" / NB.assignment / f"{STEM}.ipynb").read_text() == "john"
    assert (into / "33333" / NB.assignment / f"{STEM}.ipynb").read_text() == "mallory"
    assert not any("collision" in line for line in lines), lines
    roster = (into / "roster.csv").read_text()
    assert "66666" in roster and "\u202e" not in roster  # no bidi override reaches the names in the exports


def test_collect_prints_no_control_characters(tmp_path):
    archive = tmp_path / "canvas.zip"
    evil = "\x1b]0;PWNED\x07\x1b[2J\x1b[1;31mFAKE all clean\x1b[0m\nid collision: none"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"evilmallory_33333_900003_{evil}_{STEM}.ipynb", "x")
        z.writestr(f"{evil}.ipynb", "no id")
    run = subprocess.run([sys.executable, "-m", "grading", "collect", str(archive), "--into", str(tmp_path / "sub")],
                         cwd=course.root(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert not any(ch in run.stdout + run.stderr for ch in "\x1b\x07\r"), repr(run.stdout)
    assert not any(line.startswith("id collision") for line in run.stdout.splitlines()), run.stdout
    assert "FAKE all clean" in run.stdout  # the name is still shown, inert


def test_system_files_and_lms_receipts_are_not_listed_as_hand_ins(tmp_path):
    """An instructor's messy downloads: .DS_Store, Thumbs.db and Blackboard's receipt were listed as skipped
    hand-ins ("ask the student for the notebook"), next to a real PDF hand-in."""
    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"HW1_jsmith_attempt_2026-11-21-08-01-02_{STEM}.ipynb", "nb")
        z.writestr("HW1_jsmith_attempt_2026-11-21-08-01-02.txt", "receipt")
        z.writestr(".DS_Store", "x")
        z.writestr("Jane Doe_10001_assignsubmission_file_/.DS_Store", "x")
        z.writestr("Jane Doe_10001_assignsubmission_file_/Thumbs.db", "x")
        z.writestr("Ana Perez_10007_assignsubmission_file_/report.pdf", "pdf")
    lines = []
    collect(archive, tmp_path / "submitted", log=lines.append)
    skipped = [line for line in lines if line.startswith("skipped in the zip")]
    assert len(skipped) == 1 and "report.pdf" in skipped[0], lines
