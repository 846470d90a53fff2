# Keel: `make dev` runs the platform, `make test` runs the tests.
# Both create or reuse .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.keel-installed
# The web UI's browser libraries (package.json / package-lock.json; served by the API)
NODE_STAMP = node_modules/.keel-installed
# The TypeScript client (sdk/typescript, its own package and lock file; tests/sdk_ts)
SDK_TS_STAMP = sdk/typescript/node_modules/.keel-installed

.PHONY: install dev test lint fmt typecheck importlint bench openapi sdk clean-data screenshots

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the CPU wheel on this disk instead of a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e ./sdk/python
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(SDK_TS_STAMP): sdk/typescript/package.json sdk/typescript/package-lock.json
	cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error
	touch $(SDK_TS_STAMP)

install: $(STAMP) $(NODE_STAMP) $(SDK_TS_STAMP)

dev: install
	$(VENV)/bin/keel dev

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m bench.turn_overhead

# the web UI's screenshots (docs/screenshots/, shown in README and docs/web.md)
screenshots: install
	KEEL_WEB_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest tests/web $(PYTEST_ARGS)

openapi: install
	$(PY) -m api.openapi_export docs/openapi.json

# the Python SDK's models from docs/openapi.json (run after `make openapi`; docs/sdk.md)
sdk: install
	$(PY) sdk/python/generate.py

clean-data:
	rm -rf .keel-data
