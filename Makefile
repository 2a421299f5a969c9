# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install edgevla (editable) with the pinned torch CPU wheel.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: demo test test-runtime lint format bench clean

$(STAMP): pyproject.toml constraints.txt packages/edgevla-runtime/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e packages/edgevla-runtime -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgevla demo

# Two workers, one test file each at a time (module fixtures built once per file): the suite
# is mostly one-thread work, so it takes about half the time on 2 cores (6.1 vs 11.8 min, same
# host, same hour, 2026-12-03). Plain `pytest` still runs serially.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The board package alone: a throw-away venv with numpy and pytest only (no torch, MuJoCo,
# matplotlib), so an import of them sneaking into the runtime fails here.
test-runtime:
	rm -rf .venv-runtime && $(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check './packages/edgevla-runtime[test,jpeg]'
	cd packages/edgevla-runtime && ../../.venv-runtime/bin/python -m pytest -q -p no:cacheprovider tests
	rm -rf .venv-runtime

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks packages
	$(BIN)/ruff format --check src tests benchmarks packages

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks packages
	$(BIN)/ruff check --fix src tests benchmarks packages

bench: $(STAMP)
	$(BIN)/edgevla bench sim

clean:
	rm -rf $(VENV) .venv-runtime .pytest_cache outputs
