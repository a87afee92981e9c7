"""Grading at scale: parallel = serial, resume after kill -9, and the Dask path give the same grades."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading import course
from grading.pipeline import autograde_class
from grading.tools import synthetic

NB1 = next(nb for nb in course.notebooks() if nb.assignment == "01_scoring_functions")
WRONG = {"masked_softmax": "def masked_softmax(X, valid_lens):\n    return torch.softmax(X, dim=-1)\n"}
KINDS = {"a_complete": "complete", "b_blank": "blank", "c_partial": "partial", "d_wrong": "complete",
         "e_crash": "crash", "f_colab_py": "colab_py", "g_complete": "complete", "h_stripped": "stripped"}


@pytest.fixture(scope="module")
def klass(tmp_path_factory) -> Path:
    submitted = tmp_path_factory.mktemp("class") / "submitted"
    synthetic.make_class(submitted, KINDS, notebooks=[NB1], overrides={"d_wrong": WRONG})
    return submitted


def table(out: Path) -> list[list[str]]:
    with open(out / "grades.csv", newline="") as f:
        return sorted(csv.reader(f))


@pytest.fixture(scope="module")
def serial(klass, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    autograde_class(klass, out, workers=0, db=str(out / "gradebook.db"), progress=False)
    return out


def test_serial_grades_are_what_each_kind_earns(serial):
    totals: dict[str, float] = {}
    for row in table(serial)[:-1]:  # the header sorts last
        if row[4]:
            totals[row[0]] = totals.get(row[0], 0) + float(row[4])
    assert totals["a_complete"] == totals["g_complete"] == totals["f_colab_py"] == totals["h_stripped"] == 13
    assert totals["b_blank"] == 0
    # masked_softmax wrong: points lost on its check and the two that use it, and only there
    assert 13 - 4 - 3 - 3 <= totals["d_wrong"] < 13
    assert 0 < totals["e_crash"] < 13


def test_parallel_equals_serial(klass, serial, tmp_path):
    out = tmp_path / "parallel"
    summary = autograde_class(klass, out, workers=2, db=str(out / "gradebook.db"), progress=False)
    assert summary.workers == 2
    assert table(out) == table(serial)


def test_resume_after_kill_9_equals_an_uninterrupted_run(klass, serial, tmp_path):
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "grading", "autograde", str(klass), "--out", str(out), "--workers", "1",
           "--db", str(out / "gradebook.db"), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=course.root(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list((out / "results").rglob("*.json"))) < 3:
        assert proc.poll() is None, "the grader finished before it could be killed: grow the class"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the grader, its workers and their sandboxes
    proc.wait(timeout=30)
    done_before = len(list((out / "results").rglob("*.json")))
    assert 3 <= done_before < len(KINDS)
    again = subprocess.run(cmd, cwd=course.root(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{done_before} reused from an earlier run" in again.stderr
    assert table(out) == table(serial)


def test_dask_local_cluster_equals_serial(klass, serial, tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "dask"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary = autograde_class(klass, out, db=str(out / "gradebook.db"), progress=False,
                                  scheduler=cluster.scheduler_address)
    assert summary.submissions == len(KINDS)
    assert table(out) == table(serial)


def test_a_result_graded_by_other_grader_code_is_graded_again(klass, tmp_path, monkeypatch):
    """Resume reuses a stored result only while the grader's own code and library versions are those that
    graded it: a fixed check or a new torch grades every submission again."""
    from grading import submission
    from grading.model import GradeTask, SubmissionResult
    from grading.store import ResultStore

    path = next(klass.rglob("*.ipynb"))
    task = GradeTask("s1", NB1.assignment, NB1.name, str(path), str(NB1.source))
    store = ResultStore(tmp_path)
    store.save(SubmissionResult("s1", NB1.assignment, NB1.name, str(path), fingerprint=submission.fingerprint(task)))
    assert store.finished(task) is not None
    monkeypatch.setattr(submission, "grader_version", lambda: "another version of the grader")
    assert store.finished(task) is None
