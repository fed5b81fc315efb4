# Quick start: `make demo` and `make test`. Both create/refresh .venv/ first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test gallery bench gpu clean venv dot

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# a CPU build of torch when none is importable; users' own torch is kept otherwise
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# graphviz's `dot` is only needed for pictures; install it when we can (root + apt), never fail on it
dot:
	@command -v dot >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq graphviz >/dev/null 2>&1) || true; }
	@command -v dot >/dev/null 2>&1 && echo "graphviz: $$(dot -V 2>&1)" || echo "graphviz: 'dot' not installed; DOT text only"

test: $(STAMP) dot
	TRITON_INTERPRET=1 $(PY) -m pytest -n 2 -q

demo: $(STAMP) dot
	$(VENV)/bin/ebmgraph demo --out out/demo

gallery: $(STAMP) dot
	$(VENV)/bin/ebmgraph render specs/*.yaml --gallery docs/gallery

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(VENV)/bin/ebmgraph bench compiler
	$(VENV)/bin/ebmgraph bench rollout
	$(VENV)/bin/ebmgraph bench planners

# On a CUDA machine: the GPU-marked kernel tests (compiled, not interpreted) and the rollout benchmark table.
gpu: $(STAMP)
	TRITON_INTERPRET=0 $(PY) -m pytest -q -m gpu tests/test_kernels_rollout.py tests/test_kernels_mppi.py
	TRITON_INTERPRET=0 $(VENV)/bin/ebmgraph bench rollout

clean:
	rm -rf $(VENV) out .pytest_cache
