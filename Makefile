# Two commands matter: `make demo` (the main job on the embedded simulated data) and `make test`.
# Both create .venv if it is missing: torch==2.13.0 first (an unpinned torch pulls a CUDA build), then the package.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= standard
DEVICE ?= cpu

.PHONY: demo test check-sources readme figures clean-venv

$(STAMP): settings.ini setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scdtl demo --out figures

# Notebooks are the source: fail if nbdev_export or nbdev_clean would change any tracked file.
check-sources: $(STAMP)
	$(PY) tools/check_sources.py

# One torch/BLAS thread per notebook and two notebooks at a time: faster than two threads fighting on 2 cores.
test: check-sources
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

readme: $(STAMP)
	$(PY) tools/make_readme.py

clean-venv:
	rm -rf $(VENV)
