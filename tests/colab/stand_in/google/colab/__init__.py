"""Stand-in for Colab's ``google.colab`` (tests only): what the course's notebooks and attnkit touch.

Colab imports ``google.colab`` before any cell runs; the twin's kernel starts with
``--ext google.colab`` to do the same.  ``google`` stays a namespace package, as in Colab.
"""

from google.colab import output  # noqa: F401  (Colab's package exposes it)

__stand_in__ = True
loaded_at_kernel_start = False


def load_ipython_extension(ipython) -> None:  # noqa: ARG001 - IPython's extension hook
    global loaded_at_kernel_start
    loaded_at_kernel_start = True
