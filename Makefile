# Two commands matter: `make demo` (the main job on the embedded simulated data) and `make test`.
# Both create .venv if it is missing: torch==2.13.0 first (an unpinned torch pulls a CUDA build), then the package.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= standard
DEVICE ?= cpu

.PHONY: demo test check-sources readme figures figures-bench figures-notebooks $(addprefix nb-,$(PAPER_NBS)) quick quick-ablation scale clean-venv

$(STAMP): settings.ini setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,peers]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scdtl demo --out figures

# Notebooks are the source: fail if nbdev_export or nbdev_clean would change any tracked file.
check-sources: $(STAMP)
	$(PY) tools/check_sources.py

# ruff's pyflakes rules keep every module standing on its own imports (a notebook-only import fails here); then the
# notebooks (tests/test_notebooks.py) and the installed package from outside (the rest of tests/), one torch/BLAS
# thread per worker and two workers: faster than two threads fighting on 2 cores.
test: check-sources
	$(VENV)/bin/ruff check --select F scdtl
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

readme: $(STAMP)
	$(PY) tools/make_readme.py

clean-venv:
	rm -rf $(VENV)

# The paper's figures and tables: the benchmark grid (held-out, MCV and null tasks, every method in a fresh worker
# process) and the ablations through ONE pool of WORKERS processes with one thread each (`scdtl bench all`: the
# ablations' long U-Net fits first, the grid's short jobs fill in, no worker idles between the two), then every notebook
# of nbs/paper through papermill, NB_JOBS at a time with THREADS threads each, the two longest first. PROFILE=standard
# on this 2-core machine: see figures/time_figures_standard.txt (the README reads it); PROFILE=smoke checks the route in
# minutes with tiny networks; PROFILE=full DEVICE=cuda is the GPU route. Figures and tables land in figures/, executed
# notebooks in figures/notebooks/. Notebooks run in their own folder (--cwd nbs/paper), so paths handed to them are
# relative to nbs/paper. Data: $SCDTL_DATA_DIR.
THREADS ?= 1
WORKERS ?= 2
NB_JOBS ?= 2
RUN := OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS)
PAPERMILL := $(RUN) $(VENV)/bin/papermill --cwd nbs/paper
NB_ARGS = -p profile $(PROFILE) -p device $(DEVICE) -p out_dir ../../figures
GRID = -p results ../../figures/bench_grid_$(PROFILE).csv
paper_nb = mkdir -p figures/notebooks && $(PAPERMILL) nbs/paper/$(1).ipynb figures/notebooks/$(1).ipynb
BULK_CACHE := .cache/bulk_models
BENCH = $(VENV)/bin/scdtl bench --bulk-cache $(BULK_CACHE)
PAPER_NBS := fig6_trajectory zeros fig5_umap unet_gate headroom training_curves fig7_mcv fig3_accuracy fig4_clustering fig8_false_signals \
	ablation table1_datasets

# `make figures` times itself (/usr/bin/time) into figures/time_figures_$(PROFILE).txt, which the README reads.
# The bulk models are shared by the grid, the ablations and the notebooks of one run, through $(BULK_CACHE), emptied
# before each run; so are the few fits the zeros, unet_gate and training_curves notebooks read back instead of refitting.
figures: $(STAMP)
	mkdir -p figures && rm -rf $(BULK_CACHE)
	/usr/bin/time -f "%e" -o figures/time_figures_$(PROFILE).txt $(MAKE) figures-bench figures-notebooks

figures-bench: $(STAMP)
	$(BENCH) all --profile $(PROFILE) --device $(DEVICE) --workers $(WORKERS) --quiet --out figures

figures-notebooks: $(STAMP)
	$(MAKE) -j$(NB_JOBS) $(addprefix nb-,$(PAPER_NBS))

nb-fig3_accuracy nb-fig4_clustering nb-fig7_mcv nb-fig8_false_signals:
	$(call paper_nb,$(@:nb-%=%)) $(NB_ARGS) $(GRID)
nb-fig5_umap:
	$(call paper_nb,fig5_umap) $(NB_ARGS) $(GRID) -p bulk_cache ../../$(BULK_CACHE)
nb-zeros nb-fig6_trajectory nb-unet_gate nb-training_curves:
	$(call paper_nb,$(@:nb-%=%)) $(NB_ARGS) -p bulk_cache ../../$(BULK_CACHE)
nb-headroom:
	$(call paper_nb,headroom) $(NB_ARGS)
nb-ablation:
	$(call paper_nb,ablation) $(NB_ARGS) -p results ../../figures/bench_ablation_$(PROFILE).csv
nb-table1_datasets:
	$(call paper_nb,table1_datasets) -p out_dir ../../figures

# After every model change: the quick profile (the real preset on the smallest CellBench set, one task per protocol,
# every method) into figures/bench_grid_quick.csv, timed into figures/time_quick.txt (three scDTL outputs). Its ablations:
# `make quick-ablation` (184 s here; the U-Net variants train longest).
quick: $(STAMP)
	mkdir -p figures && rm -rf $(BULK_CACHE)
	/usr/bin/time -f "%e" -o figures/time_quick.txt $(BENCH) grid --profile quick --device $(DEVICE) --workers $(WORKERS) --quiet --out figures

quick-ablation: $(STAMP)
	$(BENCH) ablation --profile quick --device $(DEVICE) --workers $(WORKERS) --quiet --out figures

# Atlas scale: synthetic atlases of 10^4, 10^5 and 10^6 cells x 20,000 genes with a real 10x run's sparsity (about 45 GB
# under .cache/scale), every stage in a fresh process with its own peak RSS; scDTL beside scVI (10 epochs, at 10^4
# cells) and MAGIC (up to 10^5); then each phase's training throughput against a plain matmul, and the scale notebook
# (figures/scale.png, scale_ratios.csv, scale_inference.csv). Timed into figures/time_scale.txt.
SCALE_SIZES ?= 10000,100000,1000000
scale: $(STAMP)
	mkdir -p figures/notebooks
	/usr/bin/time -o figures/time_scale.txt -f "%e s elapsed, %M KiB max RSS" $(VENV)/bin/scdtl bench scale \
		--sizes $(SCALE_SIZES) --work-dir .cache/scale --out figures --budget-cells 20000 --scvi-epochs 10 --quiet
	OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(VENV)/bin/scdtl bench speed --out figures --quiet  # 2 threads, as the stages above
	$(call paper_nb,scale) -p results ../../figures/bench_scale.csv -p speed ../../figures/bench_speed_fast.csv \
		-p budget ../../figures/scale_budget.csv -p out_dir ../../figures
