# keras_cnas: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: venv demo report test test-all benchmarks bazel-check clean

# The venv is (re)installed when setup.py changes; `pip install -e` keeps the code live.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test,examples]"
	touch $(STAMP)

venv: $(STAMP)

# A constrained Monte Carlo search on the bundled digits (the MIT-LL schedule shrunk to
# 25 random + 25 adaptive + 8 fully trained, full runs <= 20 epochs) so that it fits in five
# minutes on 2 cores (docs/results.md has the measured time). Its best model is retrained and
# saved in $(DEMO_DIR)/best, then exported to a verified int8 model.tflite there (arena
# measured in TFLite Micro). The paper's 50/50/20: make demo DEMO_SCHEDULE="--num_random=50
# --num_adaptive=50 --num_full=20 --full_epochs=30 --patience=4".
DEMO_SCHEDULE ?= --num_random=25 --num_adaptive=25 --num_full=8 --full_epochs=20 --patience=3
DEMO_FLAGS ?= --dataset=digits --space=descriptor --strategy=montecarlo $(DEMO_SCHEDULE) \
	--max_conv_layers=4 --max_filters=32 --max_fc_layers=1 --max_hidden=128 \
	--traction_epochs=3 --batch_size=32 \
	--max_memory_bytes=60000 --max_flops=1e6 --export=int8

demo: $(STAMP)
	$(PY) tools/search.py $(DEMO_FLAGS) --search_dir=$(DEMO_DIR) --overwrite

# Plots, a Markdown page and TensorBoard files of the demo search (also while it runs).
report: $(STAMP)
	$(PY) tools/report.py --search_dir=$(DEMO_DIR)

# One pytest-xdist worker per core, at most TEST_WORKERS (each worker holds a TensorFlow);
# --dist loadfile keeps a file's tests on one worker, so its module fixtures (trained
# models, searches) are built once.
TEST_WORKERS ?= 4
CORES := $(shell nproc 2>/dev/null || echo 1)
XDIST := -n $(shell echo $$(( $(CORES) < $(TEST_WORKERS) ? $(CORES) : $(TEST_WORKERS) ))) --dist loadfile

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST)

test-all: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "slow or not slow"

benchmarks: $(STAMP)
	$(PY) benchmarks/cost_speed.py

# Checks the BUILD files with Bazel offline (Debian's bazel-bootstrap) and that every
# file they name exists.
bazel-check:
	bash .ci/check_bazel.sh

clean:
	rm -rf $(VENV) *.egg-info runs
