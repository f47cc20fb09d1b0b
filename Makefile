# keras_cnas: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: venv demo test test-all benchmarks bazel-check clean

# The venv is (re)installed when setup.py changes; `pip install -e` keeps the code live.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test,examples]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --out_dir=$(DEMO_DIR)

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
