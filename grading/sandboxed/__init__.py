"""Everything that runs inside the sandbox, next to the student's code.

This package imports nothing else of ``grading`` (a test checks it): the sandbox is given this folder
alone, read-only.  :mod:`.protocol` is the one definition of the wire format that both ends use;
:mod:`.runner` is the warm interpreter that forks one isolated process per submission.  Nothing here
decides a grade: the grader (:mod:`grading.execution`) compares what comes back in its own process.
"""
