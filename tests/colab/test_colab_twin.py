"""Every notebook, top to bottom, in a twin of Colab's runtime, through its own set-up cell.

The twin (``tests/colab_twin.py``) has Colab's package versions from Colab's published freeze
(ipywidgets 7.7.1, IPython 7.34.0, ipykernel 6.17.1, jupyter_client 7.4.9, matplotlib 3.10.0,
numpy 2.1.3, pip 24.1.2, setuptools 75.2.0 ...) and a stand-in ``google.colab`` imported at kernel
start.  Each notebook runs in a fresh environment layered on it, with ``ATTNKIT_INSTALL`` pointing
the set-up cell at a copy of this checkout's ``helpers/`` (what a clone of the course repository
would have) and pip offline.  Asserted: the set-up cell installs attnkit and pip changes none of
Colab's packages; no cell fails (in a student notebook: only the unanswered stubs); every widget
is an ipywidgets 7 model, Colab's custom widget manager is not switched on (not needed there); and
every slider, moved as Colab's front end moves it, redraws what it should.

The twin is built on first use (about a minute) and cached in ``.colab-twin/``.  What each run
measured is written to ``test-artifacts/colab-twin/<notebook>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import colab_twin
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from notebook_inventory import ROOT, demos, first_code_cell, graded, read, rel, unexpected_errors

ARTIFACTS = ROOT / "test-artifacts" / "colab-twin"
# ipywidgets 7's model modules and versions (ipywidgets 8's are 2.0.0 / 1.0.0): what Colab renders
IPYWIDGETS_7_MODELS = {
    ("@jupyter-widgets/controls", "1.5.0"),
    ("@jupyter-widgets/base", "1.2.0"),
    ("@jupyter-widgets/output", "1.0.0"),
}

RUNS = (
    [pytest.param("solution", nb.source, id=f"solution:{nb.assignment}") for nb in graded()]
    + [pytest.param("student", nb.release, id=f"student:{nb.assignment}") for nb in graded()]
    + [pytest.param("demo", p, id=f"demo:{p.stem}") for p in demos()]
)

PROBE_BEFORE = (
    "import importlib.util, sys\n"
    "print('PROBE-BEFORE', 'google.colab' in sys.modules, importlib.util.find_spec('attnkit') is None)"
)

# Run after the last cell, in the same kernel: moves every slider as Colab's front end does (a comm
# message {"method": "update", "state": {"value": ...}} handled by the widget), then reports.
PROBE_AFTER = r'''
import gc as _gc, json as _json, sys as _sys
import ipywidgets as _w
import attnkit as _attnkit
import attnkit.explorer as _explorer
import google.colab as _colab
import google.colab.output as _colab_output


def _front_end_sets(widget, value):
    """What the front end sends when a student moves a control: sliders sync `value`, selection
    widgets (Dropdown, ToggleButtons) sync the `index` of the chosen option."""
    if hasattr(widget, "_options_values"):
        state = {"index": list(widget._options_values).index(value)}
    else:
        state = {"value": value}
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


_report = {"ipywidgets": _w.__version__, "attnkit_file": _attnkit.__file__, "prefix": _sys.prefix,
           "google_colab_loaded_at_kernel_start": _colab.loaded_at_kernel_start,
           "custom_widget_manager_calls": list(_colab_output.custom_widget_manager_calls),
           "explorer_sliders": [], "interact_sliders": []}
# every control, each to the first of two values that differs from its current one; S in the explore view
_moves = [("view", ("explore",)), ("x", (-2.0, 1.0)), ("y", (2.5, -1.0)), ("scale", (10.0, 0.1)),
          ("valid_len", (3, 2)), ("scoring", ("distance", "dot product")),
          ("preset", ("opposite key 1", "close to key 1")), ("view", ("selection vs averaging",))]
for _ex in [o for o in _gc.get_objects() if isinstance(o, _explorer.AttentionExplorer)]:
    for _name, _values in _moves:
        _control = _ex.controls[_name]
        _value = next((v for v in _values if v != _control.value), None)
        if _value is None:
            continue
        _before = (_ex.renders, _ex.png)
        _front_end_sets(_control, _value)
        _report["explorer_sliders"].append({
            "control": _name, "widget": type(_control).__name__, "value_set": _control.value == _value,
            "redrawn_once": _ex.renders == _before[0] + 1, "figure_changed": _ex.png != _before[1],
            "image_widget_updated": bytes(_ex.image.value) == _ex.png})

_tracebacks = []
_ip = get_ipython()
_showtraceback = _ip.showtraceback
_ip.showtraceback = lambda *a, **k: _tracebacks.append(repr(_sys.exc_info()[1]))
try:
    for _i in [o for o in _gc.get_objects() if isinstance(o, _w.interactive)]:
        for _control in _i.kwargs_widgets:
            if isinstance(_control, (_w.FloatSlider, _w.FloatLogSlider, _w.IntSlider)):
                _value = min(_control.value * 10, 10 ** _control.max) if isinstance(_control, _w.FloatLogSlider) \
                    else _control.max
                _errors = len(_tracebacks)
                _front_end_sets(_control, _value)
                _report["interact_sliders"].append({
                    "widget": type(_control).__name__, "description": _control.description,
                    "function_rerun_with_new_value": _i.kwargs.get(_control._kwarg) == _value,
                    "errors": _tracebacks[_errors:]})
finally:
    _ip.showtraceback = _showtraceback
print("PROBE-AFTER " + _json.dumps(_report))
'''


@pytest.fixture(scope="session")
def twin() -> colab_twin.Twin:
    start = time.perf_counter()
    built = colab_twin.build()
    print(f"Colab twin: {built.root} ({time.perf_counter() - start:.1f}s)")
    return built


@pytest.fixture(scope="session")
def helpers_clone(tmp_path_factory) -> Path:
    """helpers/ as a clone of the repository has it: tracked and untracked, not ignored, files."""
    dest = tmp_path_factory.mktemp("clone") / "helpers"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "helpers"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest.parent / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    return dest


def _stream(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _errors(cell) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def run_in_twin(path: Path, twin: colab_twin.Twin, helpers: Path, where: Path, monkeypatch):
    for var in ("NBGRADER_EXECUTION", "ATTNKIT_WIDGETS", "ATTNKIT_DEVICE", "ATTNKIT_INSTALL"):
        monkeypatch.delenv(var, raising=False)
    python = colab_twin.layer(twin, where)
    before = colab_twin.versions(python)
    assert "attnkit" not in before, "the fresh environment must not have attnkit before the set-up cell"
    env = {
        "ATTNKIT_INSTALL": f"attnkit @ {helpers.as_uri()}",
        "PIP_NO_INDEX": "1",  # offline: only the build backend, from the twin's wheelhouse
        "PIP_FIND_LINKS": str(twin.wheelhouse),
        "PIP_CONFIG_FILE": os.devnull,  # not this machine's pip configuration
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONNOUSERSITE": "1",
        "IPYTHONDIR": str(where / "ipython"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # Colab's, not the tests' Agg
    }
    kernels = colab_twin.kernel_spec(twin, python, where, env)
    km = KernelManager(kernel_name="colab-twin", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    nb = read(path)
    setup_index = nb.cells.index(first_code_cell(nb))
    nb.cells.insert(setup_index, nbformat.v4.new_code_cell(PROBE_BEFORE))
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_AFTER))
    workdir = where / "work"
    workdir.mkdir()
    client = NotebookClient(nb, km=km, timeout=600, allow_errors=True, resources={"metadata": {"path": str(workdir)}})
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            client.set_widgets_metadata()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    probe_before, setup = nb.cells[setup_index], nb.cells[setup_index + 1]
    probe_after = nb.cells.pop()
    del nb.cells[setup_index]
    text = _stream(probe_after)
    assert "PROBE-AFTER " in text, (f"the probe after the last cell failed: {_errors(probe_after)} {text[-2000:]}\n"
                                    f"set-up cell: {_errors(setup)} {_stream(setup)}; before: {_stream(probe_before)}")
    report = json.loads(text.split("PROBE-AFTER ", 1)[1].splitlines()[0])
    report["setup_output"] = _stream(setup)
    report["setup_errors"] = _errors(setup)
    report["probe_before"] = _stream(probe_before).strip()
    report["versions_before"], report["versions_after"] = before, colab_twin.versions(python)
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    report["widget_models"] = sorted({(m["model_module"], m["model_module_version"], m["model_name"])
                                      for m in state.values()})
    report["widget_views"] = sorted({json.dumps(o.data["application/vnd.jupyter.widget-view+json"], sort_keys=True)
                                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                                     if "application/vnd.jupyter.widget-view+json" in o.get("data", {})})
    return nb, report


# What an unanswered notebook may raise: its stubs, and checks and later cells that need the answers.
BLANK_ANSWER_ERRORS = {"NotImplementedError", "NameError", "AssertionError"}


def _unexpected_in_a_blank_notebook(nb) -> list[str]:
    """Errors that are not a consequence of unanswered exercises: any error before the first stub
    raised (the set-up cell and the given code must work), and after it any but the kinds above."""
    problems, stub_seen = [], False
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if out.ename == "NotImplementedError":  # a stub, called by its own cell or a "try it" cell
                stub_seen = True
            elif not (stub_seen and out.ename in BLANK_ANSWER_ERRORS):
                problems.append(f"cell {index}: {out.ename}: {out.evalue}")
    return problems + [p for p in unexpected_errors(nb) if not stub_seen]


@pytest.mark.slow
@pytest.mark.parametrize("kind, path", RUNS)
def test_notebook_runs_in_the_colab_twin(kind, path, twin, helpers_clone, tmp_path, monkeypatch):
    start = time.perf_counter()
    nb, report = run_in_twin(path, twin, helpers_clone, tmp_path, monkeypatch)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["twin_python"] = report["prefix"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{kind}-{path.stem}.json").write_text(json.dumps(report, indent=1, default=list))

    # Colab's start: google.colab imported before any cell, attnkit not there yet.
    assert report["probe_before"] == "PROBE-BEFORE True True", report["probe_before"]
    assert report["google_colab_loaded_at_kernel_start"]
    # The set-up cell installed attnkit from this checkout, into the fresh environment.
    assert not report["setup_errors"], f"{rel(path)}: the set-up cell failed: {report['setup_errors']}\n" \
                                       f"{report['setup_output']}"
    assert "Installing the course helpers" in report["setup_output"] and "Installed." in report["setup_output"], \
        report["setup_output"]
    assert report["attnkit_file"].startswith(report["prefix"]), report["attnkit_file"]
    # pip changed none of Colab's packages: the same versions as before, and attnkit the only new one.
    before, after = report["versions_before"], report["versions_after"]
    changed = {n: (v, after.get(n)) for n, v in before.items() if after.get(n) != v}
    assert not changed, f"pip changed Colab's packages (before, after): {changed}"
    assert set(after) - set(before) == {"attnkit"}, sorted(set(after) - set(before))
    assert before == twin.pinned, "the layer must see the twin exactly as built"

    # No cell failed (a student notebook: only its unanswered stubs and their consequences).
    if kind == "student":
        assert not _unexpected_in_a_blank_notebook(nb), _unexpected_in_a_blank_notebook(nb)
    else:
        failed = [f"cell {i}: {e}" for i, c in enumerate(nb.cells) if c.cell_type == "code" for e in _errors(c)]
        assert not failed, f"{rel(path)} in the Colab twin: {failed}"

    # Widgets: ipywidgets 7 models only, shown with Colab's own manager (no custom manager needed).
    assert report["ipywidgets"] == twin.pins["ipywidgets"] == "7.7.1"
    assert report["custom_widget_manager_calls"] == [], "Colab renders ipywidgets 7 itself: no custom manager"
    modules = {(module, version) for module, version, _ in report["widget_models"]}
    assert modules <= IPYWIDGETS_7_MODELS, f"not ipywidgets 7 models: {modules - IPYWIDGETS_7_MODELS}"
    for view in map(json.loads, report["widget_views"]):
        assert (view["version_major"], view["version_minor"]) == (2, 0), view
    # Every slider works: moved as the front end moves it, it redraws what it should.
    for move in report["explorer_sliders"]:
        assert all(move[k] for k in ("value_set", "redrawn_once", "figure_changed", "image_widget_updated")), move
    for move in report["interact_sliders"]:
        assert move["function_rerun_with_new_value"], move
        # a blank notebook's slider plots the student's (missing) answer
        errors = [e for e in move["errors"] if kind != "student" or e.split("(")[0] not in BLANK_ANSWER_ERRORS]
        assert not errors, move
    if "explore(" in "".join(c.source for c in nb.cells if c.cell_type == "code") and kind != "student":
        assert report["explorer_sliders"], "the explorer was not built as a live widget"
        assert report["widget_models"], "no widget state was recorded"
    print(f"{rel(path)} in the Colab twin: {report['seconds']}s, widget models {sorted(modules)}")
