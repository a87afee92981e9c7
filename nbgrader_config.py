"""nbgrader configuration of the course: this folder is the course.

solutions/ is nbgrader's source directory (solutions + hidden tests) and notebooks/ its release
directory (what students get).  Run nbgrader's own commands and JupyterLab's Formgrader from this
folder; ``python -m grading`` finds the course the same way (the working directory, or --course).
"""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by traitlets when this file is loaded

ROOT = Path(__file__).resolve().parent
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.course_id = "attention"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'gradebook.db'}"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300

# Formgrader's "Generate Feedback" renders the autograded notebooks for students: strip hidden tests first
# (the autograded notebooks written by `python -m grading autograde` hold none; this guards any other source),
# and the outputs of student code that ran after a hidden check had called it (they could show its inputs).
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

from grading.reporting.feedback import ClearAfterHidden  # noqa: E402

c.GenerateFeedback.preprocessors = [ClearHiddenTests, ClearAfterHidden, GetGrades, CSSHTMLHeaderPreprocessor]
