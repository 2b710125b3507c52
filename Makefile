# Set-up in two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# A pinned, verified pair: other resolutions can pick an incompatible build.
TORCH = torch==2.14.1 torchvision==0.29.1
STAMP = $(VENV)/.skvision-installed

.PHONY: demo test docs bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/skvision demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The site, with every example executed; warnings are errors.
docs: $(STAMP)
	$(BIN)/python -m pip install -e ".[docs]"
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

bench: $(STAMP)
	$(BIN)/python -m pip install -e ".[bench]"
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/vit_overhead.py
	$(BIN)/python bench/extractor_throughput.py
	$(BIN)/python bench/augment_throughput.py
	$(BIN)/python bench/boosting_overhead.py
	$(BIN)/python bench/unet_overhead.py
	$(BIN)/python bench/style_throughput.py
	$(BIN)/python bench/detector_overhead.py
	$(BIN)/python bench/precision_throughput.py
	$(BIN)/python bench/file_loading.py
	$(BIN)/python -m pip install -e ".[distributed]"
	$(BIN)/python bench/parallel_scaling.py

clean:
	rm -rf $(VENV) skvision-demo .pytest_cache docs/_build docs/generated docs/auto_examples docs/_generated docs/sg_execution_times.rst
