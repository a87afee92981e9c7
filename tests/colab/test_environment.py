"""environment.yml (conda), pyproject.toml (pip) and the Makefile describe the same environment."""

from __future__ import annotations

import re

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

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


SUPPORTED = [(3, 10), (3, 11), (3, 12), (3, 13)]  # Colab's default runtime is 3.13, its fallback 3.12


def test_environment_yml_installs_both_projects_editable_and_a_supported_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "-e ./helpers" in _env_pip(), "environment.yml must install attnkit (helpers/) editable"
    assert "-e ." in _env_pip(), "environment.yml must install the instructor's project editable"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major, minor = (int(x) for x in python.split("=")[1].split(".")[:2])
    assert (major, minor) in SUPPORTED


def test_makefile_installs_both_projects_editable():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-e \./helpers -e \"\.\[dev\]\"", makefile), (
        "make venv must install attnkit (helpers/) and the instructor's project, both editable"
    )
    assert re.search(r"^\$\(STAMP\): pyproject\.toml helpers/pyproject\.toml$", makefile, re.M), (
        "a change to either pyproject.toml must reinstall .venv"
    )


@pytest.mark.parametrize("path", ["pyproject.toml", "helpers/pyproject.toml"])
def test_metadata_admits_python_3_10_to_3_13(path):
    meta = tomllib.loads((ROOT / path).read_text())
    project = meta["project"]
    spec = SpecifierSet(project["requires-python"])
    for major, minor in SUPPORTED:
        assert spec.contains(f"{major}.{minor}.0"), f"{path}: requires-python {spec} refuses {major}.{minor}"
        assert f"Programming Language :: Python :: {major}.{minor}" in project["classifiers"], path
    assert spec.contains("3.13.15") and spec.contains("3.12.13"), "Colab's runtimes (default and fallback)"
    # setuptools before 77 cannot read the SPDX string `license = "MIT"`
    build = [Requirement(r) for r in meta["build-system"]["requires"]]
    setuptools = next(r for r in build if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.9") and setuptools.specifier.contains("77.0"), path


def test_makefile_searches_python_3_10_to_3_13():
    makefile = (ROOT / "Makefile").read_text()
    search = re.search(r"^PYTHON \?= \$\(shell for p in ([^;]+);", makefile, re.M)
    assert search, "the Makefile's interpreter search is missing"
    names = search.group(1).split()
    for major, minor in SUPPORTED:
        assert f"python{major}.{minor}" in names
    assert "<= (3, 13)" in makefile


def test_the_no_deps_oracle_is_pinned_identically_everywhere():
    pinned = _pyproject()["tool"]["attention-course-kit"]["install-without-deps"]
    makefile = re.search(r"^NO_DEPS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert makefile == pinned
    for req in pinned:
        assert req in (ROOT / "environment.yml").read_text()
        assert req in (ROOT / "README.md").read_text()
