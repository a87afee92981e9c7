"""The notebooks in a real browser: JupyterLab on localhost, driven by headless Chromium (Playwright).

Opens the ungraded demo and one student notebook, runs every cell, drags a slider of the attention
explorer and checks that its figure changes, and checks that no cell shows an error other than the
student stubs' NotImplementedError (and NameErrors that are only their consequence).  Screenshots go
to test-artifacts/browser/ (git-ignored), timings to test-artifacts/browser/timings.json.

Needs the Python package ``playwright`` and a Chromium binary (Debian: ``apt-get install chromium``,
found at /usr/bin/chromium; set ATTNKIT_CHROMIUM to use another).  Playwright's own browser download
(``playwright install``) is not used.  When either is missing the test fails and says how to install.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from notebook_inventory import ROOT, demos, graded, rel, unexpected_errors
from real_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, _require_browser, _settings, _status, stop_server

ARTIFACTS = ROOT / "test-artifacts" / "browser"
TIMINGS: dict[str, float] = {}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (token auth, a free port) serving copies of the notebooks under test."""
    _require_browser()
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    served = {}
    for path in [*demos()[:1], graded()[0].release]:
        target = root / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        served[rel(path)] = target
    _settings(base / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in {"MPLBACKEND", "NBGRADER_EXECUTION", "ATTNKIT_WIDGETS"}}
    env.update({
        "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
    })
    log = open(base / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--ServerApp.open_browser=False",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],  # CI containers run as root
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _status(f"{url}/api/status?token={token}") != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(base / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    except BaseException:
        server.terminate()
        raise
    anonymous = _status(f"{url}/api/status")
    TIMINGS["jupyterlab_start_s"] = time.perf_counter() - start
    try:
        assert anonymous == 403, f"JupyterLab must refuse requests without the token, answered {anonymous}"
        yield {"url": url, "token": token, "served": served}
    finally:
        stop_server(server, log)


@pytest.fixture(scope="module")
def browser(lab):
    sync_playwright = _require_browser()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's screenshots
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")


# --------------------------------------------------------------------------- driving JupyterLab
def open_notebook(browser, lab, relpath: str):
    target = lab["served"][relpath]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    # A workspace of its own, reset: only this notebook is open (so `.jp-Notebook` is unique).
    workspace = secrets.token_hex(4)
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{target.parent.name}/{target.name}"
              f"?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
    page.wait_for_timeout(500)
    no_dialog(page)
    return page, target


def no_dialog(page) -> None:
    dialogs = page.locator(".jp-Dialog")
    if dialogs.count() and "Select Kernel" in dialogs.first.inner_text():
        # JupyterLab sometimes asks although the notebook names an installed kernel (a race while
        # it loads the kernel specs); accept the preselected "Python 3 (ipykernel)" like a user would.
        dialogs.first.locator(".jp-Dialog-button.jp-mod-accept").click()
        page.wait_for_selector(".jp-Dialog", state="detached")
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
    if dialogs.count():
        page.screenshot(path=ARTIFACTS / "unexpected_dialog.png")
        raise AssertionError(f"JupyterLab shows a dialog: {dialogs.first.inner_text()!r}")


def menu(page, top: str, command: str) -> None:
    no_dialog(page)
    page.locator(".lm-MenuBar-item", has_text=top).first.click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').first.click()


def prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()


def wait_until_idle(page, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while time.monotonic() < deadline:
        busy = any("*" in p for p in prompts(page))
        idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
        if idle and not busy:
            return
        time.sleep(0.25)
    raise AssertionError(f"cells still running after {timeout}s: {prompts(page)}")


def run_every_cell(page) -> int:
    """Run all cells; after an error (JupyterLab stops there) continue from the next unexecuted cell."""
    menu(page, "Run", "runmenu:run-all")
    wait_until_idle(page)
    rounds = 1
    while True:
        todo = [i for i, p in enumerate(prompts(page)) if p.strip() in ("[ ]:", "")]
        if not todo:
            return rounds
        assert rounds < 60, f"cells never ran: {todo}"
        no_dialog(page)
        page.locator(".jp-CodeCell").nth(todo[0]).locator(".jp-InputArea-prompt").click()
        menu(page, "Run", "notebook:run-all-below")
        wait_until_idle(page)
        rounds += 1


def save_and_read(page, path: Path) -> nbformat.NotebookNode:
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.stat().st_mtime_ns != before, "JupyterLab did not save the notebook"
    while True:  # the new mtime can show while the server is still writing the file: read it once it is whole
        try:
            return nbformat.read(path, as_version=4)
        except ValueError:  # nbformat.reader.NotJSONError: empty or cut short
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def assert_no_widget_errors(page) -> None:
    text = page.locator(".jp-Notebook").inner_text()
    for needle in ("Error displaying widget", "Failed to load model class", "Traceback (most recent call last)"):
        assert needle not in text, f"the page shows {needle!r}"


# --------------------------------------------------------------------------- the tests
def test_demo_explorer_runs_and_reacts_in_a_real_browser(browser, lab):
    start = time.perf_counter()
    (demo,) = [p for p in lab["served"] if p.startswith("notebooks/00_demo/")]
    page, path = open_notebook(browser, lab, demo)
    run_every_cell(page)
    TIMINGS["demo_run_all_s"] = time.perf_counter() - start
    assert_no_widget_errors(page)
    executed = save_and_read(page, path)
    errors = [f"{o.ename}: {o.evalue}" for c in executed.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors, f"the demo raised {errors}"

    explorers = page.locator(".attnkit-explorer")
    n_explorers = sum(1 for c in executed.cells if c.cell_type == "code" for o in c.outputs
                      if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
    assert n_explorers >= 2, "the demo should show at least two explorers"
    explorers.nth(n_explorers - 1).wait_for()
    assert explorers.count() == n_explorers, "every explorer cell must render a live widget"
    explorer = explorers.first
    explorer.scroll_into_view_if_needed()
    figure = explorer.locator("img.attnkit-explorer-figure")
    figure.wait_for()
    page.screenshot(path=ARTIFACTS / "demo_after_run_all.png", full_page=False)
    src_before, png_before = figure.get_attribute("src"), figure.screenshot()
    readout_before = explorer.locator(".attnkit-readout").inner_text()

    # A lecturer drags the query's x slider to the left.
    handle = explorer.locator(".attnkit-x .noUi-handle")
    value_before = explorer.locator(".attnkit-x .widget-readout").inner_text()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    moved = time.perf_counter()
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 9):
        page.mouse.move(x - 8 * step, y, steps=2)
        page.wait_for_timeout(40)
    page.screenshot(path=ARTIFACTS / "explorer_mid_drag.png")
    page.mouse.up()
    page.wait_for_function(
        "([sel, src]) => { const img = document.querySelector(sel); return img && img.src !== src; }",
        arg=[".attnkit-explorer img.attnkit-explorer-figure", src_before], timeout=30_000)
    wait_until_idle(page)
    page.wait_for_timeout(300)
    TIMINGS["slider_to_new_figure_s"] = time.perf_counter() - moved
    value_after = explorer.locator(".attnkit-x .widget-readout").inner_text()
    number = lambda text: float(text.replace("\u2212", "-"))  # noqa: E731 - the readout uses a real minus sign
    assert number(value_after) < number(value_before), (value_before, value_after)
    assert explorer.locator(".attnkit-readout").inner_text() != readout_before
    assert figure.get_attribute("src") != src_before
    assert figure.screenshot() != png_before, "the figure looks the same after moving the query"
    explorer.screenshot(path=ARTIFACTS / "explorer_mid_demo.png")
    page.screenshot(path=ARTIFACTS / "demo_mid_demo_page.png")

    # ... and switches to "selection vs averaging".
    src = figure.get_attribute("src")
    explorer.locator(".attnkit-view button", has_text="selection vs averaging").click()
    page.wait_for_function(
        "([sel, src]) => document.querySelector(sel).src !== src",
        arg=[".attnkit-explorer img.attnkit-explorer-figure", src], timeout=30_000)
    page.wait_for_timeout(300)
    explorer.screenshot(path=ARTIFACTS / "explorer_selection_vs_averaging.png")
    assert_no_widget_errors(page)
    page.close()
    TIMINGS["demo_test_s"] = time.perf_counter() - start


def test_student_notebook_shows_only_stub_errors_in_a_real_browser(browser, lab):
    start = time.perf_counter()
    (student,) = [p for p in lab["served"] if not p.startswith("notebooks/00_demo/")]
    page, path = open_notebook(browser, lab, student)
    rounds = run_every_cell(page)
    page.screenshot(path=ARTIFACTS / "student_notebook_after_run.png")
    executed = save_and_read(page, path)
    TIMINGS["student_notebook_s"] = time.perf_counter() - start
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell must have run"
    stubs = [o for c in code for o in c.outputs if o.output_type == "error" and o.ename == "NotImplementedError"]
    assert stubs and rounds > 1, "a blank student notebook should stop at its stubs"
    assert not unexpected_errors(executed), unexpected_errors(executed)
    text = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in text
    page.close()
