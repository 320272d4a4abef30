# Two commands on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The trainer's torch. The default is the CPU build; a GPU machine passes a CUDA build,
# e.g. `make serve TORCH_SPEC="torch==2.13.0 --index-url <PyTorch's CUDA index>"` (README, GPU training).
TORCH_SPEC ?= torch==2.13.0
# `make serve PORT=8399` or `SIMGAN_PORT=8399 make serve`; neither: simgan's default, 8000.
PORT ?=

.PHONY: install browser serve test lint format bench default-model clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[train,dev]"
	touch $@

install: $(VENV)/.installed

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
	$(PY) -m pytest

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
