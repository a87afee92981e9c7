"""attnkit.frontend: Colab's custom widget manager is switched on where it is needed, and only there.

Colab's own widget manager renders ipywidgets 7 models (Colab ships 7.7.1); ipywidgets 8 models need
``google.colab.output.enable_custom_widget_manager()``.  JupyterLab needs nothing.  (The twin test
runs the real ipywidgets 7.7.1 in a Colab-like kernel; here the decision itself, with stand-ins.)
"""

from __future__ import annotations

import sys
import types

import ipywidgets
import pytest

from attnkit import explorer, frontend


@pytest.fixture
def colab(monkeypatch):
    """A stand-in google.colab, imported (as Colab imports it at kernel start); records the calls."""
    calls: list[str] = []
    output = types.ModuleType("google.colab.output")
    output.enable_custom_widget_manager = lambda: calls.append("enable")
    package = types.ModuleType("google.colab")
    package.output = output
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    monkeypatch.setattr(frontend, "_prepared", False)
    return calls


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(frontend, "_prepared", False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


def test_colab_with_ipywidgets_8_switches_the_custom_manager_on_once(colab, monkeypatch):
    monkeypatch.setattr(ipywidgets, "__version__", "8.1.5")
    assert frontend.needs_custom_widget_manager()
    frontend.prepare()
    frontend.prepare()
    assert colab == ["enable"]


def test_colab_with_its_own_ipywidgets_7_needs_nothing(colab, monkeypatch):
    monkeypatch.setattr(ipywidgets, "__version__", "7.7.1")
    frontend.prepare()
    assert colab == []


def test_outside_colab_nothing_happens(fresh):
    assert not frontend.in_colab()
    frontend.prepare()  # would fail on the missing google.colab if it tried


class _KernelShell:
    kernel = object()


def test_choosing_the_live_explorer_prepares_the_front_end(colab, monkeypatch):
    import IPython

    monkeypatch.setattr(ipywidgets, "__version__", "8.1.5")
    monkeypatch.setattr(IPython, "get_ipython", lambda: _KernelShell())
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("ATTNKIT_WIDGETS", raising=False)
    assert explorer.use_widgets() is True  # what notebook 03 asks before its slider
    assert colab == ["enable"]


def test_grading_and_static_figures_touch_no_front_end(colab, monkeypatch):
    monkeypatch.setattr(ipywidgets, "__version__", "8.1.5")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert explorer.use_widgets() is False
    explorer.explore(interactive=False)
    assert colab == []


def test_ipywidgets_major_version():
    assert frontend.ipywidgets_major() == int(ipywidgets.__version__.split(".")[0])
