"""Where the course is: the folder the instructor stands in, never the package's own location.

A course folder holds ``nbgrader_config.py``, ``solutions/`` (nbgrader's source) and ``notebooks/``
(its release).  :func:`root` is, in order: the folder given with ``--course`` (:func:`use`), the
environment variable ``ATTNKIT_COURSE``, or the working directory or the nearest parent of it that
holds an ``nbgrader_config.py`` next to a ``solutions/`` folder.  Outputs and the gradebook are
written relative to it, so an installed (non-editable) package works from any course folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG = "nbgrader_config.py"
DEMO_ASSIGNMENT = "00_demo"  # ungraded lecture demos: only in notebooks/, no solution source
_chosen: Path | None = None


class NoCourse(RuntimeError):
    """No course folder here; the message says what was looked for."""


def is_course(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / "solutions").is_dir()


def use(folder: Path | str | None) -> None:
    """Grade the course in ``folder`` from now on (``--course``); None: back to the default search."""
    global _chosen
    if folder is None:
        _chosen = None
        return
    folder = Path(folder).expanduser().resolve()
    if not is_course(folder):
        raise NoCourse(f"{folder} is not a course folder: it needs {CONFIG} and solutions/")
    _chosen = folder
    os.environ["ATTNKIT_COURSE"] = str(folder)  # worker processes follow


def root() -> Path:
    if _chosen is not None:
        return _chosen
    env = os.environ.get("ATTNKIT_COURSE")
    if env:
        folder = Path(env).expanduser().resolve()
        if not is_course(folder):
            raise NoCourse(f"ATTNKIT_COURSE={env} is not a course folder: it needs {CONFIG} and solutions/")
        return folder
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if is_course(folder):
            return folder
    raise NoCourse(
        f"no course here: {here} and its parents hold no {CONFIG} next to a solutions/ folder; "
        "run from the course folder or pass --course PATH"
    )


def solutions() -> Path:
    return root() / "solutions"


def released() -> Path:
    return root() / "notebooks"


def demos() -> Path:
    return released() / DEMO_ASSIGNMENT


@dataclass(frozen=True)
class Notebook:
    """One graded notebook: ``<assignment>/<name>.ipynb`` in solutions/ and notebooks/."""

    assignment: str
    name: str  # file stem

    @property
    def filename(self) -> str:
        return f"{self.name}.ipynb"

    @property
    def source(self) -> Path:
        return solutions() / self.assignment / self.filename

    @property
    def release(self) -> Path:
        return released() / self.assignment / self.filename


def assignments() -> list[str]:
    """Assignment ids, in teaching order (the folders of solutions/)."""
    return sorted(p.name for p in solutions().iterdir() if p.is_dir() and not p.name.startswith("."))


def notebooks(assignment: str | None = None) -> list[Notebook]:
    """Every graded notebook, or those of one assignment."""
    ids = [assignment] if assignment else assignments()
    return [
        Notebook(a, p.stem)
        for a in ids
        for p in sorted((solutions() / a).glob("*.ipynb"))
        if ".ipynb_checkpoints" not in p.parts
    ]


def load_config(**sections: dict) -> Config:
    """The course's nbgrader_config.py, with optional overrides: ``load_config(CourseDirectory={...})``."""
    config = PyFileConfigLoader(CONFIG, path=str(root())).load_config()
    for section, values in sections.items():
        for key, value in values.items():
            setattr(config[section], key, value)
    return config


def norm_name(name: str) -> str:
    """A notebook or file name for matching: lower case, letters and digits only."""
    import re

    return re.sub(r"[^a-z0-9]+", "", name.lower())
