"""autograde as an instructor meets it, through the real CLI and sandboxed kernels: wrong notebooks,
students missing a notebook others handed in, bad usage, the dashboard, and Ctrl-C.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from grading import course
from grading.tools import synthetic

pytestmark = pytest.mark.slow

ROOT = course.root()
NB1, NB2 = course.notebooks()[0], course.notebooks()[1]


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def put(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def wrong_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("wrong")
    sub, out = base / "submitted", base / "out"
    complete1, complete2 = synthetic.submission(NB1, "complete")[1], synthetic.submission(NB2, "complete")[1]
    put(sub / "ann" / NB1.assignment / NB1.filename, complete1)
    put(sub / "dan" / NB1.assignment / NB1.filename, complete2)  # notebook 02 saved under 01's name, nothing else
    put(sub / "eve" / NB1.assignment / NB1.filename, complete1)
    put(sub / "eve" / NB2.assignment / NB2.filename, complete1)  # a second copy of 01 handed in as 02
    start = time.perf_counter()
    proc = run_cli("autograde", str(sub), "--out", str(out), "--db", str(out / "gradebook.db"), "--workers", "2")
    rows = list(csv.reader(open(out / "grades.csv"))) if (out / "grades.csv").exists() else []
    return {"proc": proc, "out": out, "sub": sub, "rows": rows, "seconds": time.perf_counter() - start}


def _rows(rows, student, nb):
    return [(r[3], r[4], r[6]) for r in rows[1:] if r[0] == student and r[2] == nb.name]


def test_a_wrong_notebook_is_graded_as_what_it_is(wrong_class):
    assert wrong_class["proc"].returncode == 0, wrong_class["proc"].stderr[-3000:]
    rows = wrong_class["rows"]
    dan2 = _rows(rows, "dan", NB2)
    assert dan2 and all(status in ("graded", "manual") for _, _, status in dan2)
    assert sum(float(s) for _, s, st in dan2 if st == "graded") > 0
    assert all(status == "error" for _, _, status in _rows(rows, "dan", NB1))
    report = (wrong_class["out"] / "report").read_text()
    assert f"wrong notebook: dan/{NB1.assignment}/{NB1.name}" in report and f"graded as {NB2.name}" in report
    assert f"wrong notebook: eve/{NB2.assignment}/{NB2.name}" in report and "left out" in report
    assert "recognised by its content" in report.split(f"== dan / {NB2.assignment}")[1].split("\n==")[0]


def test_collect_then_autograde_reports_a_wrong_notebook_as_autograde_alone_does(wrong_class, tmp_path):
    """dan's notebook 02 saved under 01's name, through an LMS download: collect files it as 02, autograde says why."""
    from grading.intake.collect import collect

    download = tmp_path / "download"
    put(download / f"ann - {NB1.filename}", synthetic.submission(NB1, "complete")[1])
    put(download / f"dan - {NB1.filename}", synthetic.submission(NB2, "complete")[1])
    put(download / f"eve - {NB1.name}.html", b"<html>exported, not the notebook</html>")
    sub, out = tmp_path / "submitted", tmp_path / "out"
    collect(download, sub, log=lambda _: None)
    assert (sub / "dan" / NB2.assignment / NB2.filename).is_file() and not (sub / "dan" / NB1.assignment).exists()
    proc = run_cli("autograde", str(sub), "--out", str(out), "--db", str(out / "gradebook.db"), "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    direct = (wrong_class["out"] / "report").read_text()
    collected = (out / "report").read_text()
    line = f"wrong notebook: dan/{NB1.assignment}/{NB1.name}: "
    said = lambda report: next(x for x in report.splitlines() if x.startswith(line)).replace(f"dan - {NB1.filename}", NB1.filename)  # noqa: E731
    assert said(collected) == said(direct)
    assert "recognised by its content" in collected.split(f"== dan / {NB2.assignment}")[1].split("\n==")[0]
    assert all(status == "error" for _, _, status in _rows(list(csv.reader(open(out / "grades.csv"))), "dan", NB1))
    assert f"collect:   not collected: eve - {NB1.name}.html: not a notebook" in collected  # what collect left out, repeated


def test_students_without_a_notebook_others_handed_in_are_listed(wrong_class):
    report = (wrong_class["out"] / "report").read_text()
    assert f"no submission: ann has no {NB2.assignment}/{NB2.name}" in report
    page = (wrong_class["out"] / "dashboard.html").read_text()
    assert "wrong notebook" in page and f"ann has no {NB2.assignment}/{NB2.name}" in page


def test_dashboard_command_rebuilds_the_page(wrong_class, tmp_path):
    page = wrong_class["out"] / "dashboard.html"
    page.unlink()
    proc = run_cli("dashboard", "--out", str(wrong_class["out"]))
    assert proc.returncode == 0 and page.exists(), proc.stderr


def test_unknown_ids_exit_2_with_the_valid_ones(wrong_class):
    sub, out = wrong_class["sub"], wrong_class["out"]
    proc = run_cli("autograde", str(sub), "--out", str(out), "--db", str(out / "gradebook.db"), "--assignment", "01")
    assert proc.returncode == 2 and NB1.assignment in proc.stderr and "valid" in proc.stderr, proc.stderr
    proc = run_cli("autograde", str(sub), "--out", str(out), "--db", str(out / "gradebook.db"), "--student", "jsmith")
    assert proc.returncode == 2 and "ann" in proc.stderr and "found" in proc.stderr, proc.stderr


def _group_alive(pgid: int) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,comm="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if line.split()[1] == str(pgid)]


def _sigint_disposition(pid: int) -> str:
    """How process ``pid`` treats SIGINT, from /proc: a run that ignores Ctrl-C must say whether it was
    started that way (blocked or ignored before it ran a line of ours) or lost the signal itself."""
    fields = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in line)
    bit = 1 << (signal.SIGINT - 1)
    return ", ".join(f"{name} {'yes' if int(fields[key], 16) & bit else 'no'}"
                     for name, key in (("blocked", "SigBlk"), ("ignored", "SigIgn"), ("caught", "SigCgt")))


@pytest.mark.timeout(900)
def test_ctrl_c_stops_fast_keeps_results_and_resumes(tmp_path):
    sub, out = tmp_path / "submitted", tmp_path / "out"
    synthetic.make_class(sub, {f"s{i}": "complete" for i in range(8)}, notebooks=[NB1])
    args = [sys.executable, "-m", "grading", "autograde", str(sub), "--out", str(out), "--db", str(out / "gradebook.db"), "--workers", "2"]
    # As at a terminal: its own process group, SIGINT at its default.  A test run started in the background of a
    # non-interactive shell inherits SIGINT ignored (POSIX), and so would the grader, which then tests nothing.
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    first = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("grading: 1/"):
                first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(400), "".join(lines)[-3000:]
    pgid = os.getpgid(proc.pid)
    disposition = _sigint_disposition(proc.pid)
    start = time.perf_counter()
    os.killpg(pgid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole foreground group
    rc = proc.wait(timeout=60)
    stopped = time.perf_counter() - start
    reader.join(10)
    text = "".join(lines)
    assert rc == 130, f"SIGINT in the grader: {disposition}; signals of this test process: {_sigint_disposition(os.getpid())}\n{text[-3000:]}"
    assert stopped < 15, f"took {stopped:.1f}s to stop"
    assert "Traceback" not in text, text[-3000:]
    interrupted = [line for line in lines if "interrupted after" in line]
    assert len(interrupted) == 1 and "run the same command again to resume" in interrupted[0], text[-2000:]
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _group_alive(pgid), _group_alive(pgid)
    kept = list((out / "results").rglob("*.json"))
    assert kept, "finished results must be kept"
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(kept)} reused from an earlier run" in again.stderr or "reused" in again.stderr, again.stderr[-2000:]
    assert len(list(csv.reader(open(out / "grades.csv")))) > 1


def test_a_resubmission_clears_the_manual_score_of_the_old_text(wrong_class, tmp_path):
    """A human graded ann's written answer; ann resubmits with another text: the old score must not stick."""
    import json

    from nbgrader.api import Gradebook

    from grading.intake.template import load_template

    sub, out = wrong_class["sub"], wrong_class["out"]
    written = next(p.grade_id for p in load_template(NB1.source, NB1.assignment, NB1.name).questions if p.graded_by == "manual")
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}", "attention") as gb:
        gb.find_grade(written, NB1.name, NB1.assignment, "ann").manual_score = 2
        # dan's file for notebook 01 is notebook 02: a score given there (to an earlier hand-in) must not stick either
        gb.find_grade(written, NB1.name, NB1.assignment, "dan").manual_score = 1.5
        gb.db.commit()
    path = sub / "ann" / NB1.assignment / NB1.filename
    notebook = json.loads(path.read_text())
    cell = next(c for c in notebook["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == written)
    cell["source"] = "A new answer, written after the first one was graded."
    path.write_text(json.dumps(notebook))
    proc = run_cli("autograde", str(sub), "--out", str(out), "--db", str(out / "gradebook.db"), "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reused from an earlier run" in proc.stderr
    report = (out / "report").read_text()
    assert f"manual score cleared: ann/{NB1.assignment}/{NB1.name} {written}: 2" in report, report[:3000]
    assert (f"manual score cleared: dan/{NB1.assignment}/{NB1.name} {written}: 1.5 (the file handed in now is another notebook)"
            in report), report[:3000]
    assert run_cli("export", "--db", str(out / "gradebook.db"), "--out", str(tmp_path / "f.csv")).returncode == 0
    rows = {(r[0], r[2], r[3]): (r[4], r[6]) for r in csv.reader(open(tmp_path / "f.csv"))}
    assert rows[("ann", NB1.name, written)] == ("", "manual")
    assert rows[("dan", NB1.name, written)][0] in ("", "0"), rows[("dan", NB1.name, written)]
    placeholder = (out / "autograded" / "dan" / NB1.assignment / f"{NB1.name}.ipynb").read_text()
    assert "Not graded automatically" in placeholder  # Formgrader shows why, not an earlier hand-in


def test_no_sandbox_exits_3_and_stores_nothing(tmp_path):
    sub, out = tmp_path / "submitted", tmp_path / "out"
    synthetic.make_class(sub, {"ann": "complete"}, notebooks=[NB1])
    env = {**os.environ, "PATH": str(tmp_path / "empty")}  # no bwrap on PATH: the sandbox cannot start
    proc = subprocess.run([sys.executable, "-m", "grading", "autograde", str(sub), "--out", str(out), "--db", str(out / "g.db")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 3 and "sandbox" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list((out / "results").rglob("*.json")) if (out / "results").exists() else True
