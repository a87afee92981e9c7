"""The widget front end: which ipywidgets is installed, and getting the front end ready for it.

Colab renders widgets with its own widget manager, which understands ipywidgets 7 models (Colab
ships ipywidgets 7.7.1).  Models of ipywidgets 8 only render there after
``google.colab.output.enable_custom_widget_manager()``.  JupyterLab 4 and Notebook 7 render
ipywidgets 8 and need nothing.  :func:`prepare` makes that one call where it is needed (Colab with
ipywidgets 8), once per kernel, and does nothing anywhere else.  Every widget in attnkit is built
from widgets that exist with the same options in ipywidgets 7.7 and 8.
"""

from __future__ import annotations

import sys

from packaging.version import Version

_prepared = False


def ipywidgets_major() -> int | None:
    """The major version of the installed ipywidgets (7 or 8), or None without ipywidgets."""
    try:
        import ipywidgets
    except ImportError:
        return None
    return Version(ipywidgets.__version__).major


def in_colab() -> bool:
    """True in a Colab runtime, which imports ``google.colab`` before any cell runs."""
    return "google.colab" in sys.modules


def needs_custom_widget_manager() -> bool:
    """Colab's built-in widget manager cannot show ipywidgets 8 models."""
    return in_colab() and (ipywidgets_major() or 0) >= 8


def prepare() -> None:
    """Get the front end ready to show widgets: in Colab with ipywidgets 8, switch on Colab's custom
    widget manager (once per kernel); anywhere else, nothing."""
    global _prepared
    if _prepared:
        return
    if needs_custom_widget_manager():
        from google.colab import output

        output.enable_custom_widget_manager()
    _prepared = True
