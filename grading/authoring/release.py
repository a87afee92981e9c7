"""Generate the student notebooks (notebooks/) from the solutions (solutions/) with nbgrader."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory

from grading import course
from grading.course import assignments, load_config


def release(release_dir: Path | None = None, assignment_ids: list[str] | None = None) -> list[Path]:
    """Run nbgrader's generate_assignment for every assignment; return the written notebooks.

    ``release_dir`` defaults to notebooks/; tests pass a temporary folder to compare with it.
    The instructor's gradebook is not touched (nbgrader records the cells in a throw-away
    one): the release is a pure function of solutions/.
    """
    scratch = tempfile.TemporaryDirectory(prefix="attnkit-release-")
    overrides = {"force": True, "create_assignment": True}
    where = {"db_url": f"sqlite:///{Path(scratch.name) / 'gradebook.db'}"}
    if release_dir is not None:
        where["release_directory"] = str(Path(release_dir).resolve())
    config = load_config(GenerateAssignment=overrides, CourseDirectory=where)
    written: list[Path] = []
    for assignment_id in assignment_ids or assignments():
        config.CourseDirectory.assignment_id = assignment_id
        coursedir = CourseDirectory(config=config)
        converter = GenerateAssignment(coursedir=coursedir, config=config)
        converter.log.setLevel(logging.ERROR)
        handler = logging.StreamHandler()  # nbgrader's errors, with tracebacks, reach stderr
        converter.log.addHandler(handler)
        try:
            converter.start()
        finally:
            converter.log.removeHandler(handler)
        out = Path(coursedir.format_path(coursedir.release_directory, ".", assignment_id))
        written.extend(sorted(out.glob("*.ipynb")))
    scratch.cleanup()
    return written


def main() -> int:
    for path in release():
        print(f"released {path.relative_to(course.root()) if path.is_relative_to(course.root()) else path}")
    return 0
