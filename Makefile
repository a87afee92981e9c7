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
# Test processes (pytest-xdist): the suite waits on subprocesses, sandboxes and a browser a lot, so three keep
# 2 cores busy (measured: 2 processes 12.6 min, 3 processes 11.0 min).
PYTEST_WORKERS ?= 3

.PHONY: help venv system-packages demo test test-fast lint test-browser release execute grade collect export bench clean
help:
	@echo "make demo     build the student notebooks, run the solutions, report (the main job)"
	@echo "make test     lint, then the whole test suite (installs bubblewrap and chromium when it can)"
	@echo "make test-fast  the inner loop: everything but the real-browser and whole-class tests"
	@echo "make lint     ruff over grading/, helpers/ and tests/"
	@echo "make test-browser  only the real-browser test (JupyterLab + headless Chromium)"
	@echo "make release  regenerate notebooks/ from solutions/ with nbgrader"
	@echo "make execute  execute every solution notebook headlessly and report"
	@echo "make collect DOWNLOAD=lms.zip        sort an LMS download into submitted/"
	@echo "make grade [SUBMITTED=.. OUT=.. WORKERS=N]  autograde a class (default submitted/ into results/)"
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

# System packages the sandbox (bubblewrap) and the real-browser test (chromium) need: installed with the
# system's package manager when we are root or have passwordless sudo; otherwise one command to run.
system-packages:
	@missing=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ "$(NEED_BROWSER)" = 0 ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
	  if command -v apt-get >/dev/null 2>&1; then cmd="apt-get"; elif command -v dnf >/dev/null 2>&1; then cmd="dnf"; else cmd=""; fi; \
	  if [ "$$sudo" = none ] || [ -z "$$cmd" ]; then \
	    echo "error: missing system packages:$$missing"; \
	    echo "run: sudo $${cmd:-apt-get} install -y$$missing   (then make $(MAKECMDGOALS) again)"; exit 1; fi; \
	  echo ">> installing system packages:$$missing"; \
	  if [ "$$cmd" = apt-get ]; then $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	  else $$sudo dnf install -y -q $$missing; fi; \
	fi

release: $(STAMP)
	$(BIN)/python -m grading release

execute: $(STAMP)
	$(BIN)/python -m grading execute

demo: $(STAMP)
	@$(MAKE) --no-print-directory system-packages NEED_BROWSER=0
	$(BIN)/python -m grading demo

test: $(STAMP) system-packages lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check grading helpers tests

test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/notebooks/test_browser.py

collect: $(STAMP)
	@test -n "$(DOWNLOAD)" || { echo "usage: make collect DOWNLOAD=path/to/lms-download(.zip)"; exit 2; }
	$(BIN)/python -m grading collect "$(DOWNLOAD)" --into submitted

grade: $(STAMP)
	$(BIN)/python -m grading autograde $(or $(SUBMITTED),submitted) --out $(or $(OUT),results) $(if $(WORKERS),--workers $(WORKERS))

export: $(STAMP)
	$(BIN)/python -m grading export --out $(or $(FILE),final_grades.csv)

bench: $(STAMP)
	$(BIN)/python -m grading bench $(if $(STUDENTS),--students $(STUDENTS)) $(if $(WORKERS),--workers $(WORKERS))

clean:
	rm -rf gradebook.db submitted autograded feedback results demo-output
