# ratio_losses: the two commands of the README, and the steps they stand on.
#   make reproduce   the CPU reproduction profile: every preset of configs/ at cpu scale on Fashion-MNIST, then the figures (406 trainings)
#   make reproduce SCALE=full   the full-data scale (all of Fashion-MNIST, 6 seeds; hours): resumes the records of results/
#   make test        lint, notebooks clean and in sync with the package, the notebooks' tests, the fast pytest tiers
#   make test-all    make test and the Slurm, browser, determinism and GPU-kit tiers (what .ci/run runs)
# Both bootstrap what they need (a .venv with pinned torch, the package, a Jupyter kernel, Fashion-MNIST)
# and reuse it on the next run.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
comma := ,
# What each target installs into $(VENV) (pyproject.toml): the core (torch, torchvision, numpy) and the extras its work
# imports. `analysis` (which takes `experiments`) for reproduce, figures, quick, smoke and bench; `docs` for the site;
# `dev` (all of them, with nbdev, pytest and ruff) for the tests and JupyterLab. Each set is installed once: a stamp
# per set, made again when the packaging changes.
stamp = $(VENV)/.ratio_losses-$(1)
RUN_STAMP := $(call stamp,analysis)
DOCS_STAMP := $(call stamp,docs)
DEV_STAMP := $(call stamp,dev)

# torch and torchvision are pinned together: an unpinned torchvision beside another torch does not import.
# These are the releases this project is tested with (x86_64: a CUDA build that also runs on the CPU).
ifeq ($(shell uname -m),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
export MPLBACKEND := Agg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup check-citation venv data slurm browser docs lab smoke smoke-test figures resume-full test check-clean check-export lint nbdev-test nbdev-test-slow pytest test-all reproduce quick bench bench-gpu gpu-kit clean-venv

help:
	@echo "make reproduce   every preset of configs/ at cpu scale on Fashion-MNIST, then the figures (406 trainings)"
	@echo "make reproduce SCALE=full   the full scale (all of Fashion-MNIST, 6 seeds; hours on 2 cores): resumes results/"
	@echo "make figures     the papers' figures and tables, and figures/REPORT.md, from the committed records of results/"
	@echo "make figures SCALE=full   the same for the full scale (-> figures/full/)"
	@echo "make resume-full the missing full-scale points, trained from the newest commit results/full/COMMITS lists"
	@echo "make quick       one epoch of the small CNN on Fashion-MNIST (~1 min)"
	@echo "make test        lint, notebooks clean + package in sync, notebook tests, the fast pytest tiers (16-19 min on 2 cores)"
	@echo "make test-all    make test + the Slurm, browser (docs site), double-run determinism and GPU-kit tiers (CI)"
	@echo "make smoke       every distinct paper-scale configuration for two steps on fixture data, CPU (~20 min)"
	@echo "make bench       benchmarks/ (data pipeline, losses, trainer, executors, the cost of pinned CPU kernels)"
	@echo "make bench-gpu   benchmarks/gpu.py on a GPU machine (PYTHON=its python; the trainer, the pipeline, the losses)"
	@echo "make gpu-kit     gpu-kit/ (<= 64 MiB): wheels, Fashion-MNIST and run.sh, to run the gpu scale on a bare GPU host"
	@echo "make docs        the documentation site from the notebooks and the committed figures -> _docs/ (offline)"
	@echo "make lab         JupyterLab on nbs/ with the project's kernel"
	@echo "make setup       only create .venv and fetch the offline data"

## --- setup ---------------------------------------------------------------------------------------

# Re-run when the dependencies change; otherwise reuse the venv as it is.
$(VENV)/.ratio_losses-%: pyproject.toml
	@[ -x $(PY) ] || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check $(TORCH_PINS) -e '.[$*]'
	$(PY) -m ipykernel install --sys-prefix --name ratio_losses --display-name 'Python 3 (ratio_losses)'
	@$(PY) -c "import torch, torchvision, ratio_losses; print('installed: torch', torch.__version__, '| torchvision', torchvision.__version__, '| ratio_losses', ratio_losses.__version__)"
	@touch $@

venv: $(DEV_STAMP)

# Fashion-MNIST from Debian's package where apt is available (read in place, unpacked into the cache). Another apt or
# dpkg holding its lock (an unattended upgrade) is waited for, up to APT_LOCK_WAIT seconds, instead of failing at once.
APT_LOCK_WAIT ?= 600
APT_WAIT := -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT)
data:
	@if [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: $(FASHION_MNIST_DIR)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get $(APT_WAIT) install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { \
	    $(SUDO) apt-get $(APT_WAIT) update -q >/dev/null && $(SUDO) apt-get $(APT_WAIT) install -y -q dataset-fashion-mnist >/dev/null; } \
	  || { echo "error: could not install dataset-fashion-mnist with apt-get (root or passwordless sudo needed)"; exit 1; }; \
	else \
	  echo "warning: no apt-get here. Put the four Fashion-MNIST .gz files in a folder and set RATIO_LOSSES_DATA to it."; \
	fi

setup: $(RUN_STAMP) data

# Debian's Slurm and munge, for the Slurm tests: tests/slurm_cluster.py starts a one-node cluster on localhost in a
# temporary folder and stops its daemons by PID (~10 s, ~13 MB; no daemon is started by the install).
slurm:
	@if command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; then echo "Slurm: $$(/usr/sbin/slurmctld -V)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "Slurm: installing Debian's slurmctld slurmd slurm-client munge"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get $(APT_WAIT) install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 || { \
	    $(SUDO) apt-get $(APT_WAIT) update -q >/dev/null && \
	    $(SUDO) apt-get $(APT_WAIT) install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; } \
	  || { echo "error: could not install Slurm with apt-get (root or passwordless sudo needed)"; exit 1; }; \
	else echo "warning: no apt-get here: the Slurm tests are skipped (set CI to make them fail instead)"; fi

# Debian's Chromium and its driver, for the docs' browser test (tests/integration/test_docs.py drives the system browser through
# Selenium: browser downloads by Selenium or Playwright need the network).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "Chromium: $$(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "Chromium: installing Debian's chromium chromium-driver"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get $(APT_WAIT) install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || { \
	    $(SUDO) apt-get $(APT_WAIT) update -q >/dev/null && \
	    $(SUDO) apt-get $(APT_WAIT) install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } \
	  || { echo "error: could not install Chromium with apt-get (root or passwordless sudo needed)"; exit 1; }; \
	else echo "warning: no apt-get here: the browser tests are skipped (set CI to make them fail instead)"; fi

## --- docs and the notebooks ------------------------------------------------------------------------

# The site: nbdev's notebook processor, Sphinx + myst-nb + sphinx-book-theme, MathJax 3 from npm served from the site.
# Needs only the registries; fails on a Sphinx warning or a broken internal link. Open _docs/index.html.
docs: $(DOCS_STAMP)
	$(PY) docs/build.py --out _docs

# JupyterLab on nbs/ with the project's kernel as the default one.
LAB_PORT ?= 8888
lab: $(DEV_STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs --port=$(LAB_PORT) --MultiKernelManager.default_kernel_name=ratio_losses \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

## --- the two commands ----------------------------------------------------------------------------

WORKERS ?= 2
SCALE ?= cpu
# make smoke writes RUNS_ROOT/smoke/paper/
SMOKE_RUNS ?= runs
ifeq ($(SCALE),full)
# The full scale trains into results/ itself: its committed records are complete points, so they are never trained
# again, and an interrupted sweep resumes where it stopped. Presets in the order of issue 14's list (cut from the end).
REPRO_RUNS ?= results
PRESETS ?= $(FULL_PRESETS)
POINT_TIMEOUT ?= 3600
FIGURES ?= figures/full
else ifeq ($(SCALE),cpu)
REPRO_RUNS ?= runs
PRESETS ?= configs/*.yaml
POINT_TIMEOUT ?= 900
FIGURES ?= figures
else
$(error SCALE=$(SCALE) is unknown: use SCALE=cpu (the default) or SCALE=full)
endif
# The full scale's presets, in the order of issue 14's list, then issue 27's regimes; `make resume-full` finishes them
# from the newest commit results/full/COMMITS lists (each listed commit retrains the earlier ones' points bit for bit):
# a git worktree of it with its own environment (PYTHONPATH puts the worktree's package before the shared one's).
FULL_PRESETS := configs/crl_table4.yaml configs/cc_table4.yaml configs/msl_table2.yaml configs/fg_table4.yaml configs/cc_table1.yaml \
  configs/msl_regimes.yaml configs/fg_regimes.yaml
resume-full: setup
	@c=$$($(PY) -c "from ratio_losses.analysis.study import scale_commits; print((scale_commits('results', 'full') or [''])[-1])"); \
	[ -n "$$c" ] || { echo "results/full/COMMITS lists no commit yet: start the full scale with make reproduce SCALE=full"; exit 1; }; \
	case "$$c" in *+dirty) echo "the full-scale records name $$c: a dirty tree cannot be checked out again"; exit 1;; esac; \
	wt=.worktrees/full-$${c:0:7}; \
	[ -d $$wt ] || git worktree add --detach $$wt $$c; \
	if [ ! -x $$wt/.venv/bin/ratio-losses ]; then \
	  $(PYTHON) -m venv $$wt/.venv && \
	  $(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > $$($$wt/.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/ratio_losses_deps.pth && \
	  $$wt/.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e $$wt && \
	  $$wt/.venv/bin/python -m ipykernel install --sys-prefix --name ratio_losses >/dev/null; fi; \
	echo "full scale: resuming from $$wt (commit $$c) into results/full"; \
	cd $$wt && PYTHONPATH="$$PWD" .venv/bin/ratio-losses sweep $(FULL_PRESETS) --scale full --workers $(WORKERS) --runs-root "$(abspath results)" --timeout 3600

# Where `make figures` reads the runs: the committed records of results/ unless told otherwise. The report reads both
# scales of the same folder.
RUNS ?= results
REPORT ?= figures/REPORT.md

# Every preset at $(SCALE) scale (crl_table7 has no cpu scale: Adience is not available offline), two points at a time.
# Complete points are skipped and interrupted ones resume, so an interrupted `make reproduce` picks up where it stopped.
# A point that runs past POINT_TIMEOUT seconds (cpu points take 10-40 s here) is stopped and reported as failed.
# Two local workers, each keeping its Jupyter kernel from point to point (see docs/pages/executors.md).
reproduce: setup
	$(BIN)/ratio-losses sweep $(PRESETS) --scale $(SCALE) --workers $(WORKERS) --runs-root $(REPRO_RUNS) --timeout $(POINT_TIMEOUT)
	@# the report reads both scales of one folder: a cpu-scale reproduction takes the full scale from the committed records
	@if [ "$(SCALE)" = cpu ] && [ ! -e $(REPRO_RUNS)/full ] && [ "$(abspath $(REPRO_RUNS))" != "$(abspath results)" ]; then \
	  ln -s "$(abspath results/full)" $(REPRO_RUNS)/full; \
	  echo "report: the full scale is the committed records' (results/full, linked as $(REPRO_RUNS)/full)"; fi
	$(MAKE) --no-print-directory figures SCALE=$(SCALE) RUNS=$(REPRO_RUNS)
	@echo "$(SCALE) scale done. Results table: $(REPRO_RUNS)/$(SCALE)/results.csv; per run: $(REPRO_RUNS)/$(SCALE)/PRESET/POINT/ (record.json, notebook.ipynb, artifacts.npz)"
	@echo "Figures, tables and the report (PNG, PDF, Markdown, CSV): $(FIGURES)/; the executed analysis notebooks: $(REPRO_RUNS)/analysis/$(SCALE)/"

# The papers' figures and tables from the stored runs of $(RUNS) at $(SCALE) (never trains): each analysis notebook
# through papermill. cpu scale writes figures/, full scale figures/full/.
ANALYSIS := crl cc msl fine_grained
figures: setup
	@mkdir -p $(RUNS)/analysis/$(SCALE) $(FIGURES)
	@for nb in $(ANALYSIS); do \
	  echo "analysis: nbs/analysis/$$nb.ipynb ($(SCALE) scale, runs of $(RUNS)/) -> $(FIGURES)/"; \
	  $(BIN)/papermill nbs/analysis/$$nb.ipynb $(RUNS)/analysis/$(SCALE)/$$nb.ipynb --no-progress-bar -k ratio_losses \
	    -p smoke False -p runs_root "$(abspath $(RUNS))" -p scale $(SCALE) -p figures "$(abspath $(FIGURES))" \
	    2> $(RUNS)/analysis/$(SCALE)/$$nb.log || { echo "FAILED: see $(RUNS)/analysis/$(SCALE)/$$nb.ipynb and $$nb.log"; exit 1; }; \
	done
	@echo "report: nbs/analysis/report.ipynb (both scales, records of $(RUNS)/) -> $(REPORT)"
	@$(BIN)/papermill nbs/analysis/report.ipynb $(RUNS)/analysis/report.ipynb --no-progress-bar -k ratio_losses \
	    -p smoke False -p runs_root "$(abspath $(RUNS))" -p report "$(abspath $(REPORT))" -p readme "$(abspath README.md)" \
	    -p headline "$(abspath figures/full)" \
	    2> $(RUNS)/analysis/report.log || { echo "FAILED: see $(RUNS)/analysis/report.ipynb and report.log"; exit 1; }
	@echo "figures written to $(FIGURES)/, the report to $(REPORT)"

# One run, the quickest real-data check: one epoch of the small CNN on all of Fashion-MNIST.
# Every distinct paper-scale configuration of configs/ (seeds and hyperparameter values folded) for two optimiser steps
# on the CPU at its real input size, batch <= 4, on fixture data in each dataset's real layout, random weights for the
# pretrained backbones: the record, a finite loss and a checkpoint that round-trips. Not part of `make test`.
smoke: setup
	$(BIN)/ratio-losses sweep configs/*.yaml --scale paper --smoke --runs-root $(SMOKE_RUNS) --timeout 900

# The same as a pytest test marked slow (skipped by `make test`).
smoke-test: setup
	$(PY) -m pytest tests/integration/test_sweep.py --run-slow -k every_paper_point

quick: setup
	$(BIN)/ratio-losses train --dataset fashion_mnist --epochs 1

# The tiers (tests/conftest.py): `make test` runs the lint, the sync checks, the notebooks' checks and every pytest
# tier but slurm, browser, determinism and kit, two test processes at a time (pytest-xdist, a test file per process, so
# the tests that share a file's fixtures share one process); `make test-all` then adds those four tiers, one test at
# a time, and is what .ci/run runs. Both print the slowest tests (--durations).
FAST_TIERS := not slurm and not browser and not determinism and not kit
SLOW_TIERS := slurm or browser or determinism or kit
test: setup check-clean check-export lint check-citation nbdev-test
	@$(MAKE) --no-print-directory pytest PYTEST_MARK="$(FAST_TIERS)" PYTEST_ARGS="-n 2 --dist loadfile"
	@echo "make test: all checks passed (the slurm, browser, determinism and kit tiers: make test-all)"

test-all: test slurm browser
	@$(MAKE) --no-print-directory pytest PYTEST_MARK="$(SLOW_TIERS)"
	@echo "make test-all: all checks passed"

## --- the parts of `make test` --------------------------------------------------------------------

# Names and contents of the files below a folder, so that changed and new files both show.
fingerprint = find $(1) -type f -name '$(2)' -not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' -print0 \
	| sort -z | xargs -0 sha1sum

check-clean: $(DEV_STAMP)
	@before="$$($(call fingerprint,nbs,*.ipynb))"; \
	$(BIN)/nbdev-clean; \
	after="$$($(call fingerprint,nbs,*.ipynb))"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev-clean changed these notebooks; they are clean now, commit them:"; \
	  diff <(echo "$$before") <(echo "$$after") | sed -n 's/^> [0-9a-f]*  /  /p'; exit 1; fi; \
	echo "ok: notebooks are clean (nbdev-clean changes nothing)"

check-export: $(DEV_STAMP)
	@before="$$($(call fingerprint,ratio_losses,*.py))"; \
	$(BIN)/nbdev-export; \
	after="$$($(call fingerprint,ratio_losses,*.py))"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: ratio_losses/ was out of sync with nbs/; nbdev-export rewrote these, commit them with their notebooks:"; \
	  diff <(echo "$$before") <(echo "$$after") | sed -n 's/^> [0-9a-f]*  /  /p'; exit 1; fi; \
	echo "ok: ratio_losses/ is what nbs/ exports (nbdev-export changes nothing)"

# ruff (ruff.toml): the library notebooks (nbs/*.ipynb, the source nbdev writes the package from) and the package:
# syntax errors, undefined and unused names, one statement per line (no `;`) and lines of at most 120 characters. The
# package is checked at 130 for the one line nbdev writes itself: the first line of a module's `__all__`, which nbdev
# wraps at 120 before it puts `__all__ = ` in front. Tests, benchmarks, gpu/, docs and the papermill notebooks: names and
# syntax, lines of at most 140.
lint: $(DEV_STAMP)
	$(BIN)/ruff check nbs/*.ipynb
	$(BIN)/ruff check --line-length 130 ratio_losses
	$(BIN)/ruff check --line-length 140 --extend-ignore E702,E703 tests benchmarks gpu docs nbs/analysis nbs/experiments
	@echo "ok: ruff finds nothing"

# CITATION.cff, validated by cffconvert in a virtual environment of its own (it needs jsonschema < 4, Jupyter >= 4).
CFFCONVERT := $(VENV)/cffconvert/bin/cffconvert
$(CFFCONVERT):
	$(PYTHON) -m venv $(VENV)/cffconvert
	$(VENV)/cffconvert/bin/python -m pip install -q --disable-pip-version-check cffconvert==2.0.0
check-citation: $(CFFCONVERT)
	$(CFFCONVERT) --validate -i CITATION.cff
	@echo "ok: CITATION.cff is valid (cffconvert --validate)"

# Two workers, as the notebooks wait on kernels and files as much as they compute. Cells marked `#| slow` are
# skipped here; `make nbdev-test-slow` runs them too.
# nbs/analysis/ is left to pytest (tests/integration/test_analysis.py), which runs those notebooks on one shared set of tiny runs.
# The notebooks' own checks run with the CPU kernels pinned as `ratio-losses` and sweeps pin them (cpu_isa avx2).
PIN_AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2
nbdev-test: $(DEV_STAMP) data
	$(PIN_AVX2) $(BIN)/nbdev-test --n-workers 2 --timing --skip-folder-re '^([_.]|analysis$$)'

nbdev-test-slow: $(DEV_STAMP) data
	$(PIN_AVX2) $(BIN)/nbdev-test --n-workers 1 --timing --flags slow --skip-folder-re '^([_.]|analysis$$)'

# The Slurm tests start their daemons below SLURM_DIR; the trap stops any that a dying test run left, by PID.
pytest: $(DEV_STAMP) data
	@d=$$(mktemp -d /tmp/ratio-losses-slurm-XXXXXX); chmod 755 "$$d"; trap '$(PY) tests/slurm_cluster.py stop '"$$d"'; rm -rf '"$$d" EXIT; \
	RATIO_LOSSES_SLURM_DIR=$$d $(PY) -m pytest tests --durations=15 $(if $(PYTEST_MARK),-m "$(PYTEST_MARK)") $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/losses.py
	$(PY) benchmarks/trainer.py
	$(PY) benchmarks/executors.py
	$(PY) benchmarks/numerics.py

# The prepared GPU benchmark (synthetic CIFAR on the GPU; needs only torch and the package): under 5 minutes.
# GPU_BENCH_ARGS=--compile adds the torch.compile pass; benchmarks/gpu.py --quick is its CPU smoke run.
bench-gpu:
	$(PYTHON) benchmarks/gpu.py $(GPU_BENCH_ARGS)

# gpu-kit/ (gpu/make_kit.py): the wheels a bare GPU host lacks for CPython $(GPU_KIT_PYTHONS) (x86_64, from the package
# registry), Fashion-MNIST's four files and run.sh; carry it in beside the tree and run gpu-kit/run.sh OUT there.
GPU_KIT_PYTHONS ?= 3.10 3.11 3.12 3.13
gpu-kit: $(RUN_STAMP) data
	$(PY) gpu/make_kit.py --out gpu-kit --pythons $(GPU_KIT_PYTHONS)

clean-venv:
	rm -rf $(VENV)
