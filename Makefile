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

# A constrained Monte Carlo search on the bundled digits (MIT-LL 50/50/20 schedule):
# about five minutes on 2 cores. Its best model is retrained and saved in $(DEMO_DIR)/best,
# then exported to a verified int8 model.tflite there (arena measured in TFLite Micro).
DEMO_FLAGS ?= --dataset=digits --space=descriptor --strategy=montecarlo \
	--num_random=50 --num_adaptive=50 --num_full=20 \
	--max_conv_layers=4 --max_filters=32 --max_fc_layers=1 --max_hidden=128 \
	--traction_epochs=3 --full_epochs=30 --patience=4 --batch_size=32 \
	--max_memory_bytes=60000 --max_flops=1e6 --export=int8

demo: $(STAMP)
	$(PY) tools/search.py $(DEMO_FLAGS) --search_dir=$(DEMO_DIR) --overwrite

# Plots, a Markdown page and TensorBoard files of the demo search (also while it runs).
report: $(STAMP)
	$(PY) tools/report.py --search_dir=$(DEMO_DIR)

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

benchmarks: $(STAMP)
	$(PY) benchmarks/cost_speed.py

# Checks the BUILD files with Bazel offline (Debian's bazel-bootstrap) and that every
# file they name exists.
bazel-check:
	bash .ci/check_bazel.sh

clean:
	rm -rf $(VENV) *.egg-info runs
