# cpuidkit — two commands on a fresh machine:
#   make lab    set up .venv with the notebook extras and open JupyterLab on notebooks/
#   make test   set up .venv with the test extras (and the system tools the tests use) and run every test

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?=

# JupyterLab bound to loopback only, with Jupyter's normal token (never disabled).
# (--allow-root only when running as root, where Jupyter refuses to start without it)
LAB_CMD = $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# Voila presentation of one notebook for design reviews: code hidden, widgets live,
# loopback only, with a token Voila generates and prints in the URL.
NB ?=
PRESENT_CMD = $(BIN)/voila --Voila.ip=127.0.0.1 --no-browser --token --strip_sources=True

.PHONY: lab test static bench present setup-notebooks setup-test system-deps clean help

help:
	@echo "make lab    - set up and open JupyterLab on notebooks/ (no /dev/kvm needed)"
	@echo "make test   - set up and run every test"
	@echo "make present NB=notebooks/09-design-review-walkthrough.ipynb - one notebook as a Voila app (code hidden)"
	@echo "make bench  - measure every speed figure (writes bench/results.json)"
	@echo "make static - import contracts, ruff and mypy (also part of make test)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.notebooks-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[notebooks]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[test]'
	touch $@ $(VENV)/.notebooks-installed

setup-notebooks: $(VENV)/.notebooks-installed
setup-test: $(VENV)/.test-installed

# System packages the tests use: the reference decoder (Debian's `cpuid`), chromium for the browser tests,
# and QEMU, a static busybox and cpio for the kernel lab (Debian's 6.1/6.12 kernels, fetched by apt on
# first use into ~/.cache/cpuidkit/lab). Installed with apt-get when missing and we are root; otherwise
# the tests that need them skip with a message (CI makes them required: see .ci/run).
system-deps:
	@missing=""; \
	command -v cpuid >/dev/null 2>&1 || missing="$$missing cpuid"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$$missing qemu-system-x86"; \
	[ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	command -v cpio >/dev/null 2>&1 || missing="$$missing cpio"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: not installed:$$missing (tests needing them will skip; install with apt-get)"; \
	  fi; \
	fi

lab: setup-notebooks
	$(LAB_CMD)

present: setup-notebooks
	@nb="$(NB)"; \
	if [ -z "$$nb" ]; then echo "usage: make present NB=notebooks/NN-name.ipynb (or NB=NN)"; exit 2; fi; \
	if [ ! -f "$$nb" ]; then nb=$$(ls notebooks/$$nb*.ipynb 2>/dev/null | head -n 1); fi; \
	if [ -z "$$nb" ] || [ ! -f "$$nb" ]; then echo "no notebook matches NB=$(NB)"; exit 2; fi; \
	echo "presenting $$nb (open the URL with ?token=... that Voila prints)"; \
	$(PRESENT_CMD) "$$nb"

# The floors (import-linter), ruff (lint and format) and mypy, settings in pyproject.toml; also run as tests.
static: setup-test
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache cpuidkit
	$(BIN)/ruff format --check --no-cache cpuidkit
	$(BIN)/mypy

test: setup-test system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every speed figure against its goal; writes bench/results.json (benchmarks never fail the build).
bench: setup-test
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
