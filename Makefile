# Two commands do all set-up: `make run` (serve) and `make test` (the whole suite). See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
HAND_WRITTEN := server client tests api/generate.py bench

.PHONY: run test host-deps test-host-deps venv lint typecheck buf-lint generate check-generate pytest bench clean

## Debian packages the service needs (containerd, runc); installed only when missing.
host-deps:
	@missing=""; \
	command -v containerd >/dev/null || missing="$$missing containerd"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

## The tests also build an image around a static busybox, so containers really run.
test-host-deps: host-deps
	@if [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends busybox-static; \
	fi
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; \
	fi

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

## Serve on 127.0.0.1:50051 against a private containerd (flags after ARGS=..., or IMAGEREMOVAL_* variables).
run: host-deps venv
	$(BIN)/imageremoval-server $(ARGS)

## Everything CI checks: lint, generated code, types, API lint, then pytest against a real containerd.
test: test-host-deps venv lint check-generate typecheck buf-lint buf-breaking node-deps pytest

lint: venv
	$(BIN)/ruff check $(wildcard $(HAND_WRITTEN))
	$(BIN)/ruff format --check $(wildcard $(HAND_WRITTEN))

typecheck: venv
	$(BIN)/mypy $(wildcard $(HAND_WRITTEN))

buf-lint: venv
	$(BIN)/buf lint

generate: venv
	$(BIN)/python api/generate.py

check-generate: venv
	$(BIN)/python api/generate.py --check

pytest: venv
	$(BIN)/pytest $(PYTEST_ARGS)

bench: host-deps venv
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache

.PHONY: node-deps buf-breaking

## The Node.js client test's npm packages, exactly as locked; reinstalled only when the lock file changes.
node-deps: tests/node/node_modules/.package-lock.json

tests/node/node_modules/.package-lock.json: tests/node/package-lock.json | test-host-deps
	npm ci --prefix tests/node --no-audit --no-fund
	touch $@

## API changes that would break generated clients fail against the last released API (api/released/).
buf-breaking: venv
	$(BIN)/buf breaking --against api/released/imageremoval-v1.binpb
