# Front door of the course kit.  Quick start: `make demo`, `make test`.
# Every target creates .venv/ on first use and reinstalls only when pyproject.toml changes.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# d2l 1.0.3 pins ancient numpy/matplotlib/pandas: installed without its dependencies.
# Keep in sync with pyproject.toml [tool.attention-course-kit] and environment.yml.
NO_DEPS := d2l==1.0.3
# The first interpreter in 3.10-3.13 found on PATH that runs, python3 first (override: make PYTHON=/path/to/python3.11).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11 python3.10; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null \
	&& echo $$p && break; done)
export MPLBACKEND ?= Agg

.PHONY: help venv demo test test-browser release execute grade collect export bench clean
help:
	@echo "make demo     build the student notebooks, run the solutions, report (the main job)"
	@echo "make test     run the test suite"
	@echo "make test-browser  only the real-browser test (JupyterLab + headless Chromium)"
	@echo "make release  regenerate notebooks/ from solutions/ with nbgrader"
	@echo "make execute  execute every solution notebook headlessly and report"
	@echo "make collect DOWNLOAD=lms.zip        sort an LMS download into grading/submitted/"
	@echo "make grade [SUBMITTED=.. OUT=.. WORKERS=N]  autograde a class (default grading/submitted)"
	@echo "make export FILE=final_grades.csv     the final table, manual grades included"
	@echo "make bench    plain nbgrader vs this pipeline on a synthetic class (40 students; several minutes)"
	@echo "make clean    remove generated grading output (keeps .venv)"

venv: $(STAMP)
$(STAMP): pyproject.toml helpers/pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no Python 3.10-3.13 found on PATH; set PYTHON=/path/to/python3.11"; exit 1; }
	@echo ">> creating $(VENV) with $(PYTHON) and installing the project (first run only)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ./helpers -e ".[dev]"  # attnkit (the student package) and the instructor's project
	$(BIN)/python -m pip install -q --no-deps "$(NO_DEPS)"
	touch $(STAMP)

release: $(STAMP)
	$(BIN)/python -m grading release

execute: $(STAMP)
	$(BIN)/python -m grading execute

demo: $(STAMP)
	$(BIN)/python -m grading demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/test_browser.py

collect: $(STAMP)
	@test -n "$(DOWNLOAD)" || { echo "usage: make collect DOWNLOAD=path/to/lms-download(.zip)"; exit 2; }
	$(BIN)/python -m grading collect "$(DOWNLOAD)" --into grading/submitted

grade: $(STAMP)
	$(BIN)/python -m grading autograde $(or $(SUBMITTED),grading/submitted) --out $(or $(OUT),grading/results) $(if $(WORKERS),--workers $(WORKERS))

export: $(STAMP)
	$(BIN)/python -m grading export --out $(or $(FILE),final_grades.csv)

bench: $(STAMP)
	$(BIN)/python -m grading bench $(if $(STUDENTS),--students $(STUDENTS)) $(if $(WORKERS),--workers $(WORKERS))

clean:
	rm -rf grading/gradebook.db grading/submitted grading/autograded grading/feedback grading/results demo-output
