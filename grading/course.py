"""Where things are: the course layout and its nbgrader configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

GRADING_DIR = Path(__file__).resolve().parent
ROOT = GRADING_DIR.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
# Ungraded lecture demos live only in notebooks/ (they have no solution source).
DEMOS = NOTEBOOKS / "00_demo"


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
        return SOLUTIONS / self.assignment / self.filename

    @property
    def release(self) -> Path:
        return NOTEBOOKS / self.assignment / self.filename


def assignments() -> list[str]:
    """Assignment ids, in teaching order (the folders of solutions/)."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and not p.name.startswith("."))


def notebooks(assignment: str | None = None) -> list[Notebook]:
    """Every graded notebook, or those of one assignment."""
    ids = [assignment] if assignment else assignments()
    return [
        Notebook(a, p.stem)
        for a in ids
        for p in sorted((SOLUTIONS / a).glob("*.ipynb"))
        if ".ipynb_checkpoints" not in p.parts
    ]


def load_config(**sections: dict) -> Config:
    """grading/nbgrader_config.py, with optional overrides: ``load_config(CourseDirectory={...})``."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(GRADING_DIR)).load_config()
    for section, values in sections.items():
        for key, value in values.items():
            setattr(config[section], key, value)
    return config
