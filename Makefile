# vqpress: one entry point for setup, tests, benchmarks and the demo.
# `make demo` and `make test` work on a fresh machine: both build .venv first.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
# CPU machines get the CPU wheel of torch; a GPU machine may bring its own (TORCH_SPEC=torch).
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup test test-gpu bench demo proto lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[server,dev]"
	touch $@

test: setup
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

# On the GPU machine: the same suite plus the CUDA tests (Triton k-means, gsplat vs the PyTorch twin).
test-gpu:
	$(PYTHON) -m pytest -m gpu $(PYTEST_ARGS)

bench:
	$(PYTHON) bench/run_all.py

demo: setup
	$(PY) -m vqpress_server.demo

proto: setup
	$(PY) -m vqpress_server.rpc.protogen

lint: setup
	$(PY) -m ruff check client server tests bench
	$(PY) -m ruff format --check client server tests bench

clean:
	rm -rf $(VENV) .pytest_cache demo-out
