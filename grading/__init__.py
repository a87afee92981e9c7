"""The instructor's side of the course kit: release, execution and (auto)grading on top of nbgrader."""

import os
import sys

# nbgrader runs its gradebook migrations through the `alembic` console script, found on PATH.
# Make the scripts of the interpreter running us visible even when the venv is not activated
# (`.venv/bin/python -m grading ...`).
_scripts = os.path.dirname(sys.executable)
if _scripts not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _scripts + os.pathsep + os.environ.get("PATH", "")

# jsonschema (under nbformat) imports rfc3987_syntax when it is installed, which compiles an IRI grammar
# at import: 1.3 s in every grading process.  Notebook schemas never use the "iri" formats it checks.
sys.modules.setdefault("rfc3987_syntax", None)
