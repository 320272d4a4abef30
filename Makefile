# Two commands on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The trainer's torch, from PyTorch's own wheel index. The default is the CPU build (about 0.8 GB
# installed): on Linux x86-64 plain PyPI serves a CUDA 13 build of several GB instead. A GPU host
# asks for the CUDA build that matches onnxruntime-gpu's CUDA 13 (README, "Which torch"):
#   make clean install TORCH_INDEX=https://download.pytorch.org/whl/cu130
# --retries 2: where PyTorch's index cannot be reached, pip falls back to the other indexes and
# local wheels of its own configuration in seconds rather than a minute and a half.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# One stamp per torch build: asking for another build runs the install again.
STAMP := $(VENV)/.installed-$(notdir $(TORCH_INDEX))
# `make serve PORT=8399` or `SIMGAN_PORT=8399 make serve`; neither: simgan's default, 8000.
PORT ?=

.PHONY: install browser serve test test-gpu lint format bench default-model clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --retries 2 "$(TORCH_SPEC)" --index-url $(TORCH_INDEX)
	$(PY) -m pip install -q -e ".[train,dev]"
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda or 'none')"
	touch $@

install: $(STAMP)

# The browser of the /docs test (tests/service/test_docs_browser.py): Debian's chromium and its
# driver. Installed when missing and apt-get can (root); otherwise that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
		|| echo "make: could not install chromium; the browser test will skip"; \
	else echo "make: no chromium and no apt-get as root; the browser test will skip"; fi

serve: install
	$(VENV)/bin/simgan serve $(if $(PORT),--port $(PORT))

test: install browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -m "not gpu"

# The GPU tests (tests marked gpu, tests/test_gpu.py): CUDA training steps, export, resume on the CPU,
# CUDA-provider refine against the CPU provider, throughput into bench/results/gpu_refine.md. They
# are skipped without CUDA and never part of `make test`. Needs a CUDA build of torch (TORCH_INDEX
# above) and onnxruntime-gpu's CUDA libraries (the "gpu" extra).
test-gpu: install
	$(PY) -m pip install -q -e ".[train,dev,gpu]"
	$(PY) -m pytest -m gpu

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(VENV)/bin/simgan bench refine

# Re-creates the bundled default refiner (models/bundled/); see README.
default-model: install
	$(VENV)/bin/simgan bundle-default

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
