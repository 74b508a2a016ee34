# Two entry points, each does all set-up on a fresh machine:
#   make demo   -- the main job: the whole XTR + xQG pipeline on the shipped sample
#   make test   -- lint + the test suite (what .ci/run runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=

.PHONY: demo test test-deps lint format venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One environment for both entry points: the package with every extra, at the tested pins.
$(VENV)/.installed: $(BIN)/python setup.py constraints.txt
	$(BIN)/pip install -c constraints.txt -e ".[all]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/xtr-jax demo $(DEMO_ARGS)

lint: $(VENV)/.installed
	$(BIN)/pip check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python docs/assemble_readme.py --check

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# System packages for the browser test (Debian's Chromium + chromedriver, CJK fonts).
test-deps:
	bash tools/install_test_deps.sh

test: lint test-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

clean:
	rm -rf $(VENV)
