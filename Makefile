# vqpress: one entry point for setup, tests, benchmarks and the demo.
# `make demo` and `make test` work on a fresh machine: both build .venv first.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
# CPU machines get the CPU wheel of torch; a GPU machine may bring its own (TORCH_SPEC=torch).
TORCH_SPEC  ?= torch==2.13.0
PYTEST_ARGS ?=
# The web tools the interop tests check our files against, installed with npm into a git-ignored
# cache folder (tests/test_interop.py finds them there, or at $$VQPRESS_NODE_TOOLS; without node
# or npm those tests skip).
NODE_TOOLS  ?= .node-tools
NODE_PKGS   := @playcanvas/splat-transform@3.7.0 spz-js@1.2.5
NODE_STAMP  := $(NODE_TOOLS)/.installed-splat-transform-3.7.0-spz-js-1.2.5

# The viewer test drives Debian's Chromium headless (WebGL through SwiftShader, no GPU). `make browser`
# installs it when it is missing and we may (root with apt-get); otherwise that test skips and says why.
CHROMIUM    ?= /usr/bin/chromium

.PHONY: setup node-tools browser test test-gpu bench demo cluster-demo proto lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[server,cluster,dev]"
	touch $@

node-tools: $(NODE_STAMP)

$(NODE_STAMP):
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		mkdir -p $(NODE_TOOLS) && \
		npm install --prefix $(NODE_TOOLS) --no-audit --no-fund --loglevel=error $(NODE_PKGS) && touch $@ \
		|| echo "npm install failed: the interop tests will skip"; \
	else echo "node/npm not found: the interop tests will skip"; fi

browser:
	@if [ -x "$(CHROMIUM)" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
		 (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null)) \
		|| echo "apt-get install chromium failed: the viewer's browser test will skip"; \
	else echo "no chromium and not root with apt-get: the viewer's browser test will skip (apt-get install chromium)"; fi

test: setup node-tools browser
	VQPRESS_NODE_TOOLS=$(abspath $(NODE_TOOLS)) $(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

# On the GPU machine: the same suite plus the CUDA tests (Triton k-means, gsplat vs the PyTorch twin).
test-gpu:
	$(PYTHON) -m pytest -m gpu $(PYTEST_ARGS)

bench:
	$(PYTHON) bench/run_all.py

demo: setup
	$(PY) -m vqpress_server.demo

# A Ray head and two worker nodes on 127.0.0.1, the server with --executor ray, one node killed mid-run.
cluster-demo: setup
	$(PY) -m vqpress_server.cluster_demo

proto: setup
	$(PY) -m vqpress_server.rpc.protogen

lint: setup
	$(PY) -m ruff check client server tests bench
	$(PY) -m ruff format --check client server tests bench

clean:
	rm -rf $(VENV) .pytest_cache demo-out $(NODE_TOOLS)
