"""nbgrader configuration for the course kit.

solutions/ is nbgrader's source directory (solutions + hidden tests) and
notebooks/ its release directory (what students get).  Run nbgrader's own
commands from this folder (`cd grading && nbgrader formgrader`) or load this
file with grading.course.load_config().
"""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by traitlets when this file is loaded

ROOT = Path(__file__).resolve().parent.parent
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "attention"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'grading' / 'gradebook.db'}"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
