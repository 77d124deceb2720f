# make demo: the whole pipeline on generated faces (no data, no weights, CPU is enough).
# make test: the test suite, a whole-pipeline run on a tiny config included.
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO := --config 'benchmarks=[synthetic]'

.PHONY: install demo figure test test-slurm lint

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -e '.[test,slurm,faces]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/snakemake $(DEMO)
	@cat results/tables/claims.md
	@echo
	@cat results/tables/accuracy.md
	@echo
	@cat results/tables/variants.md
	@echo
	@echo "Tables: results/tables/ (claims, accuracy, ablation, interpretability, variants; .csv and .md)"
	@echo "Figures: results/synthetic/<variant>/figures/ (losses, accuracy, confusion, masks, patterns, own, differences)"
	@echo "Per fold: results/synthetic/default/<fold>/ (checkpoints, metrics, predictions.csv, summary.json)"
	@echo "Logs: results/synthetic/logs/. One page with all of it: .venv/bin/snakemake --report report.html"

# README's picture, from the demo's results (run make demo first)
figure: $(INSTALLED)
	$(BIN)/expmap overview results/synthetic/default docs/images/demo.png

test: $(INSTALLED)
	$(BIN)/pytest -q -rs

test-slurm: $(INSTALLED)
	$(BIN)/pytest -q -rs tests/test_slurm.py

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint $(DEMO)
