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

.PHONY: install serve test lint format bench default-model clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[train,dev]"
	touch $@

install: $(VENV)/.installed

serve: install
	$(VENV)/bin/simgan serve $(if $(PORT),--port $(PORT))

test: install
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
