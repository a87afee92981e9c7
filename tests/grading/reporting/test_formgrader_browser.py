"""The instructor's loop in a real browser: Formgrader on a ``--db`` course, then export; the dashboard.

1. ``python -m grading autograde SUBMITTED --out OUT --db OUT/gradebook.db`` on a small synthetic class
   (real sandboxed kernels);
2. JupyterLab started in OUT, as the README says, on 127.0.0.1 with a token; headless Chromium
   (Playwright) opens Formgrader, checks it has no "encountered an error" page, opens a submission,
   gives a written answer a score and a comment and saves them (Formgrader saves on change);
3. ``python -m grading export`` then holds that score, ``python -m grading feedback`` the comment;
4. OUT/dashboard.html opens from disk with every figure loaded, titled and described.

Screenshots go to test-artifacts/formgrader/ (git-ignored).  Needs what tests/notebooks/test_browser.py needs.
"""

from __future__ import annotations

import csv
import os
import secrets
import subprocess
import sys
import time

import pytest
from nbgrader.api import Gradebook
from real_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, _require_browser, _settings, _status, stop_server

from grading import course
from grading.intake.template import load_template
from grading.tools import synthetic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = course.root()
ARTIFACTS = ROOT / "test-artifacts" / "formgrader"
NB = course.notebooks()[0]
T = load_template(NB.source, NB.assignment, NB.name)
WRITTEN = next(p.grade_id for p in T.questions if p.graded_by == "manual")
TIMINGS: dict[str, float] = {}


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sync_playwright = _require_browser()
    base = tmp_path_factory.mktemp("fg")
    submitted, out = base / "submitted", base / "out"
    synthetic.make_class(submitted, {"12345": "complete", "23456": "partial"}, notebooks=[NB])
    start = time.perf_counter()
    proc = run_cli("autograde", str(submitted), "--out", str(out), "--db", str(out / "gradebook.db"), "--workers", "2")
    TIMINGS["autograde_s"] = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return {"out": out, "base": base, "playwright": sync_playwright}


@pytest.fixture(scope="module")
def lab(graded):
    """JupyterLab started in the --db folder, exactly as the README tells the instructor."""
    out, base = graded["out"], graded["base"]
    _settings(base / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in {"MPLBACKEND", "NBGRADER_EXECUTION", "ATTNKIT_COURSE"}}
    env.update({"JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces")})
    log = open(base / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={out}", "--LabApp.news_url=",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _status(f"{url}/api/status?token={token}") != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(base / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        TIMINGS["jupyterlab_start_s"] = time.perf_counter() - start
        yield {"url": url, "token": token, "log": base / "jupyterlab.log"}
    finally:
        stop_server(server, log)


@pytest.fixture(scope="module")
def browser(graded):
    with graded["playwright"]() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _manual(db: str, student: str) -> tuple[float | None, str | None]:
    with Gradebook(db, "attention") as gb:
        grade = gb.find_grade(WRITTEN, NB.name, NB.assignment, student)
        comment = gb.find_comment(WRITTEN, NB.name, NB.assignment, student)
        return grade.manual_score, comment.manual_comment


def test_formgrader_grades_a_written_answer_on_a_db_course_and_export_has_it(graded, lab, browser, tmp_path):
    out, url, token = graded["out"], lab["url"], lab["token"]
    db = f"sqlite:///{out / 'gradebook.db'}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    start = time.perf_counter()
    page.goto(f"{url}/formgrader?token={token}", wait_until="networkidle")
    page.screenshot(path=str(ARTIFACTS / "1-manage-assignments.png"), full_page=True)
    body = page.inner_text("body")
    assert "encountered an error" not in body and "not a subdirectory" not in body, body[:500]
    assert NB.assignment in body, body[:1000]

    page.goto(f"{url}/formgrader/gradebook/{NB.assignment}/{NB.name}", wait_until="networkidle")
    page.wait_for_selector("a[href*='/formgrader/submissions/']", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "2-submissions.png"), full_page=True)
    with Gradebook(db, "attention") as gb:
        submission_id = gb.find_submission_notebook(NB.name, NB.assignment, "12345").id
    page.goto(f"{url}/formgrader/submissions/{submission_id}/?index=0", wait_until="networkidle")
    score = page.locator(f"input.score[id='{WRITTEN}']")
    score.wait_for(timeout=30_000)
    score.fill("1.5")
    score.press("Tab")
    comment = page.locator(f"textarea.comment[id='{WRITTEN}-comment']")
    comment.fill("Clear: the variance of q.k grows with d.")
    comment.press("Tab")
    deadline = time.monotonic() + 30
    while _manual(db, "12345") != (1.5, "Clear: the variance of q.k grows with d.") and time.monotonic() < deadline:
        time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "3-graded.png"), full_page=True)
    assert _manual(db, "12345") == (1.5, "Clear: the variance of q.k grows with d.")
    TIMINGS["formgrader_s"] = time.perf_counter() - start

    final = tmp_path / "final.csv"
    proc = run_cli("export", "--db", str(out / "gradebook.db"), "--out", str(final))
    assert proc.returncode == 0, proc.stderr
    rows = {(r[0], r[3]): (r[4], r[6]) for r in csv.reader(open(final))}
    assert rows[("12345", WRITTEN)] == ("1.5", "graded")
    assert rows[("23456", WRITTEN)] == ("", "manual")
    canvas = tmp_path / "canvas.csv"
    assert run_cli("export", "--db", str(out / "gradebook.db"), "--out", str(canvas), "--format", "canvas").returncode == 0
    by_id = {r[1]: r for r in csv.reader(open(canvas))}
    auto = {r[3]: float(r[4]) for r in csv.reader(open(out / "grades.csv")) if r[0] == "12345" and r[6] == "graded"}
    assert float(by_id["12345"][5]) == sum(auto.values()) + 1.5

    proc = run_cli("feedback", "--out", str(out), "--db", str(out / "gradebook.db"))
    assert proc.returncode == 0, proc.stderr
    text = (out / "feedback" / "12345" / NB.assignment / f"{NB.name}.html").read_text()
    assert "Clear: the variance of q.k grows with d." in text and "BEGIN HIDDEN TESTS" not in text


def test_dashboard_in_a_browser(graded, browser):
    out = graded["out"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((out / "dashboard.html").as_uri(), wait_until="load")
    assert page.title() == "Class dashboard"
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.alt, e.closest('figure').innerText])")
    assert len(images) >= 3
    for width, alt, caption in images:
        assert width > 0 and len(alt) > 20 and caption.strip()
    text = page.inner_text("body")
    for heading in ("Score distribution", "Most common failure reasons", "Students missing or with errors",
                    "Tampering flags", "Time per submission", "Answer similarity"):
        assert heading in text
    assert "23456" in text  # the partial student appears among the failures
    external = page.eval_on_selector_all("[src],[href]", "els => els.map(e => e.getAttribute('src') || e.getAttribute('href'))")
    assert all(ref.startswith(("data:", "#")) for ref in external), external
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
