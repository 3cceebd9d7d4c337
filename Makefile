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
# PORT=NNNN picks the port (default: JupyterLab 8888, Voila 8866, each trying the next ones when taken);
# remote trainees reach it through an SSH tunnel (docs/trainer-guide.md).
PORT ?=
LAB_CMD = $(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(if $(PORT),--ServerApp.port=$(PORT)) $(if $(filter 0,$(shell id -u)),--allow-root)

# Voila presentation of one notebook for design reviews: code hidden, widgets live,
# loopback only, with a token Voila generates and prints in the URL.
NB ?=
PRESENT_CMD = $(BIN)/voila --Voila.ip=127.0.0.1 $(if $(PORT),--Voila.port=$(PORT)) --no-browser --token --strip_sources=True

.PHONY: lab test static bench present course-docs setup-notebooks setup-test system-deps clean help kernels kernel-answers

help:
	@echo "make lab    - set up and open JupyterLab on notebooks/ (no /dev/kvm needed)"
	@echo "make test   - set up and run every test"
	@echo "make present NB=notebooks/09-design-review-walkthrough.ipynb - one notebook as a Voila app (code hidden)"
	@echo "make bench  - measure every speed figure (writes bench/results.json)"
	@echo "make static - import contracts, ruff and mypy (also part of make test)"
	@echo "make course-docs - regenerate docs/answer-key.md and docs/call-path.svg (a test checks they are current)"
	@echo "make kernels - fetch the kernel lab's Debian 6.1 and 6.12 kernels (apt, ~20 s and ~40 MB once)"
	@echo "make kernel-answers - ask the lab kernels and /dev/kvm notebook 08's questions (data/kernel-answers.json)"

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

# The kernel lab's kernels (docs/lab.md): the newest Debian 6.1 and 6.12 images apt offers, downloaded and
# unpacked into ~/.cache/cpuidkit/lab with their initramfs (about 20 s and 40 MB the first time; nothing boots).
kernels: setup-test system-deps
	$(BIN)/python tools/record_kernel_answers.py --fetch-only

# Notebook 08's recorded answers: boots each lab kernel (~10 s each) and asks /dev/kvm, rewrites
# data/kernel-answers.json (each record names its kernel package and version).
kernel-answers: setup-test system-deps
	$(BIN)/python tools/record_kernel_answers.py

# The trainers' answer key (from the exercises' answer functions) and the call-path figure (from data/call-path.csv).
course-docs: setup-notebooks
	$(BIN)/python tools/make_course_docs.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
