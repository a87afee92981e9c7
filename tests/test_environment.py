"""environment.yml (conda), pyproject.toml (pip) and the Makefile describe the same environment."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from grading import course

ROOT = course.root()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return pip[0]["pip"]


def _names(reqs) -> dict[str, str]:
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = _pyproject()["project"]
    declared = _names(project["dependencies"] + project["optional-dependencies"]["dev"])
    conda = _names(r for r in _env_pip() if not r.startswith("-"))
    assert set(conda) == set(declared), (
        f"only in environment.yml: {sorted(set(conda) - set(declared))}; "
        f"only in pyproject.toml: {sorted(set(declared) - set(conda))}"
    )
    assert conda == declared, "the version specifiers differ between environment.yml and pyproject.toml"


def test_environment_yml_installs_the_project_and_a_supported_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(r.startswith("-e .") for r in _env_pip())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minor = int(python.split("=")[1].split(".")[1])
    assert 10 <= minor <= 12


def test_the_no_deps_oracle_is_pinned_identically_everywhere():
    pinned = _pyproject()["tool"]["attention-course-kit"]["install-without-deps"]
    makefile = re.search(r"^NO_DEPS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert makefile == pinned
    for req in pinned:
        assert req in (ROOT / "environment.yml").read_text()
        assert req in (ROOT / "README.md").read_text()
