# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   - create .venv, install churnml, run the whole job on the bundled simulator's data
#   make test   - create .venv, install churnml with test tools, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# --dist loadgroup keeps each xdist_group (e.g. the training end-to-end tests) on one worker.
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: demo test lint typecheck bench install clean serve bento

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/churnml demo $(ARGS)

test: install chromium postgresql
	$(BIN)/ruff check src serving tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# The report test opens risk_report.html in headless Chromium (from the system packages).
.PHONY: chromium
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
			|| echo "warning: could not install chromium; the report browser test needs it"; \
	fi

# Tests on a real PostgreSQL (database sources, Optuna and MLflow on PostgreSQL) start a throwaway server
# from Debian's packages (tests/conftest.py); CHURNML_TEST_POSTGRES_URL points them at a running one instead.
.PHONY: postgresql
postgresql:
	@if [ -z "$$CHURNML_TEST_POSTGRES_URL" ] && ! command -v initdb >/dev/null 2>&1 \
		&& ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql \
			|| echo "warning: could not install postgresql; the PostgreSQL tests need it"; \
	fi

# The prediction service on the registered champion (http://127.0.0.1:3000); ARGS as for demo.
serve: install
	$(BIN)/churnml serve $(ARGS)

# A Bento of the service and the champion, for `bentoml containerize` (serving/README.md).
bento: install
	$(BIN)/churnml bento $(ARGS)

lint: install typecheck
	$(BIN)/ruff check src serving tests benchmarks
	$(BIN)/ruff format --check src serving tests benchmarks

# Settings in pyproject.toml ([tool.mypy]: src/churnml); the same check as the pre-commit hook.
typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_features.py

clean:
	rm -rf $(VENV) outputs serving/dist .pytest_cache .ruff_cache .mypy_cache
