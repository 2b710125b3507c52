# Set-up in two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# A pinned, verified pair: other resolutions can pick an incompatible build.
TORCH = torch==2.14.1 torchvision==0.29.1
# Two stamps: `make demo` needs only the runtime dependencies (the lean
# install a user gets from the wheel); `make test` adds the dev extra on top.
RUNTIME_STAMP = $(VENV)/.skvision-runtime
DEV_STAMP = $(VENV)/.skvision-dev
RELEASE_STAMP = $(VENV)/.skvision-release

.PHONY: demo test test-min test-serving lint docs bench dist check-dist clean

# `pip uninstall skvision`: a venv from before the rename to scikit-vision
# holds the same package under the old distribution name.
$(RUNTIME_STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip uninstall -y skvision
	$(BIN)/python -m pip install -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(DEV_STAMP)

$(RELEASE_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -e ".[release]"
	touch $(RELEASE_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/skvision demo

# One pytest-xdist worker per core, each with one torch thread (tests/conftest.py):
# about 12 minutes on 2 cores (a fresh clone), faster than one process with two threads.
# The tests marked `serving` (a fresh interpreter loading MLflow models,
# `mlflow models serve` on loopback) run in `make test-serving`, CI's next step.
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -n auto --dist loadgroup -m "not serving"

# The oldest versions pyproject.toml allows of torch/torchvision, scikit-learn,
# skorch, numpy and timm, in an environment of their own (.venv-min), and a
# fast subset of the tests (tools/min_dependencies.py lists it); a pass is
# recorded in tools/min_dependencies.json, which the Install page quotes.
# CI runs it when pyproject.toml's dependencies changed since that record.
MIN_VENV ?= .venv-min
test-min: $(DEV_STAMP)
	$(BIN)/python tools/min_dependencies.py --venv $(MIN_VENV) --python $(PYTHON)

test-serving: $(DEV_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/test_mlflow.py -m serving --durations=5

# ruff, with the rules of pyproject.toml's [tool.ruff].
lint: $(DEV_STAMP)
	$(BIN)/ruff check .

# The site, with every example executed; warnings are errors. Then the docs'
# timed code blocks and the README's quickstart, which `make test` leaves out,
# and the checks on the built pages (tests/test_docs_html.py: every public
# method on its API page), which skip in `make test` without --docs-html.
docs: $(DEV_STAMP)
	$(BIN)/python -m pip install -e ".[docs]"
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html
	$(BIN)/python -m pytest -p no:cacheprovider tests/test_docs_snippets.py tests/test_readme.py \
		tests/test_docs_html.py --heavy --docs-html docs/_build/html
	@echo "Open docs/_build/html/index.html"

# Every CPU script whose results the docs quote (bench/results/*.json).
# Two need a CUDA machine and are not run here: bench/gpu_check.sh
# (gpu_check.json) and `bench/time_to_accuracy.py --device cuda`
# (time_to_accuracy_cuda.json). time_to_accuracy.py fetches MNIST once.
bench: $(DEV_STAMP)
	$(BIN)/python -m pip install -e ".[bench,backbones,onnx,distributed,mlflow]"
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/vit_overhead.py
	$(BIN)/python bench/extractor_throughput.py
	$(BIN)/python bench/extractor_throughput.py --backbone vit_small_patch16_224
	$(BIN)/python bench/backbone_throughput.py
	$(BIN)/python bench/augment_throughput.py
	$(BIN)/python bench/boosting_overhead.py
	$(BIN)/python bench/unet_overhead.py
	$(BIN)/python bench/style_throughput.py
	$(BIN)/python bench/detector_overhead.py
	$(BIN)/python bench/detector_finetune.py
	$(BIN)/python bench/precision_throughput.py
	$(BIN)/python bench/file_loading.py
	$(BIN)/python bench/remote_loading.py
	$(BIN)/python bench/backbone_accuracy.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/mlflow_serving.py
	$(BIN)/python bench/time_to_accuracy.py
	$(BIN)/python bench/real_photos.py
	$(BIN)/python bench/parallel_scaling.py

# The sdist and the wheel of the scikit-vision distribution, in dist/.
dist: $(RELEASE_STAMP)
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .

# What CI checks before a release: metadata (twine), the wheel's contents,
# and the wheel installed (not editable) into a fresh virtual environment,
# run from outside the source tree.
check-dist: dist
	$(BIN)/python tools/check_dist.py --python $(PYTHON) --torch "$(TORCH)" dist

clean:
	rm -rf $(VENV) $(MIN_VENV) dist build skvision-demo .pytest_cache docs/_build docs/generated docs/auto_examples docs/_generated docs/sg_execution_times.rst
