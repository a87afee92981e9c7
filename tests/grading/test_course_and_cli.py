"""The course is where the instructor stands, the console script works from a normal install, and the
unsandboxed mode shares the sandboxed code path (same grades)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grading import course
from grading.tools import synthetic

ROOT = Path(__file__).resolve().parents[2]
NB1 = course.notebooks("01_scoring_functions")[0]
WRONG = "import torch\ndef masked_softmax(X, valid_lens):\n    return torch.softmax(X, dim=1)\n"


def _course_copy(dest: Path) -> Path:
    for item in ("solutions", "notebooks", "nbgrader_config.py"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / item)
    return dest


def _class(submitted: Path) -> None:
    for student, overrides in (("s1", None), ("s2", {"masked_softmax": WRONG})):
        target = submitted / student / NB1.assignment / f"{NB1.name}.ipynb"
        target.parent.mkdir(parents=True)
        target.write_bytes(synthetic.submission(NB1, "complete", overrides=overrides)[1])


def _grades(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project installed as a wheel (not editable) into a folder of its own."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"  # a clean copy: no build/ folder of an earlier build can leak into the wheel
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", ".colab-twin",
                                                                   "demo-output", "test-artifacts", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "wheel"), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheels = list((base / "wheel").glob("attention_course_kit-*.whl"))
    assert wheels, list((base / "wheel").iterdir())
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(base / "site"), str(wheels[0])],
                   check=True, capture_output=True, timeout=300)
    return base


def test_console_script_from_a_normal_install_grades_the_course_it_is_run_in(installed, tmp_path):
    here = _course_copy(tmp_path / "my-course")
    _class(here / "submitted")
    env = {**os.environ, "PYTHONPATH": str(installed / "site")}
    env.pop("ATTNKIT_COURSE", None)
    which = subprocess.run([sys.executable, "-c", "import grading; print(grading.__file__)"], cwd=here, env=env,
                           capture_output=True, text=True, check=True)
    assert which.stdout.startswith(str(installed / "site")), which.stdout
    shipped = {p.parent.name for p in (installed / "site" / "grading").rglob("__init__.py")}
    local = {p.parent.name for p in (ROOT / "grading").rglob("__init__.py")}
    assert shipped == local, f"the wheel lacks {sorted(local - shipped)}"
    script = installed / "site" / "bin" / "attention-grade"
    proc = subprocess.run([sys.executable, str(script), "autograde", "submitted", "--out", "results", "--workers", "1", "--quiet"],
                          cwd=here, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (here / "results" / "grades.csv").exists() and (here / "gradebook.db").exists()
    package = installed / "site" / "grading"
    written = [p for p in package.rglob("*") if p.suffix in (".db", ".csv", ".html", ".json")]
    assert not written, f"outputs written inside the installed package: {written}"


def test_outside_a_course_the_command_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ATTNKIT_COURSE"}
    proc = subprocess.run([sys.executable, "-m", "grading", "export", "--out", "x.csv"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no course here" in proc.stderr and "--course" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "grading", "--course", str(tmp_path), "export", "--out", "x.csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a course folder" in proc.stderr


def test_no_sandbox_runs_the_same_code_path_with_the_same_grades(tmp_path):
    submitted = tmp_path / "submitted"
    _class(submitted)
    rows = {}
    for mode in ("sandboxed", "unsandboxed"):
        extra = ["--no-sandbox"] if mode == "unsandboxed" else []
        proc = subprocess.run([sys.executable, "-m", "grading", "autograde", str(submitted), "--out", str(tmp_path / mode),
                               "--db", str(tmp_path / mode / "gradebook.db"), "--workers", "1", "--quiet", *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows[mode] = _grades(tmp_path / mode / "grades.csv")
        if extra:
            assert "--no-sandbox" in proc.stderr
    assert rows["sandboxed"] == rows["unsandboxed"]
    by = {(r["student_id"], r["question"]): float(r["score"] or 0) for r in rows["unsandboxed"]}
    assert by[("s1", "test_masked_softmax")] == 4 and by[("s2", "test_masked_softmax")] < 4
    report = (tmp_path / "unsandboxed" / "report").read_text()
    assert "limits:    none: --no-sandbox" in report
