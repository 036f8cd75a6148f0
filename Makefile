# The one front door. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Reproducible installs: CI and the image install exactly these pins (`make lock` re-resolves).
LOCKS := requirements/dev.lock requirements/runtime.lock
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml -q --generate-hashes --universal --python-version 3.11

.DEFAULT_GOAL := help
.PHONY: help install lock images up test lint test-python test-frontend frontend-install fuzz bench bench-autoscale migrate clean helm kind kind-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

lock: $(STAMP) ## re-resolve requirements/*.lock from pyproject.toml (after changing a dependency)
	$(UV_COMPILE) --extra dev --extra local -o requirements/dev.lock
	$(UV_COMPILE) -c requirements/dev.lock -o requirements/runtime.lock

install: $(STAMP) ## create .venv and install everything Python needs

up: $(STAMP) ## run the whole system locally on embedded defaults (Ctrl-C stops it)
	$(PY) scripts/run_local.py

migrate: $(STAMP) ## apply database migrations to IMGCONV_DATABASE_URL
	$(BIN)/imgconv migrate

lint: $(STAMP) ## ruff + mypy --strict + hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile frontend/Dockerfile
	$(BIN)/mypy core api worker operator cli migrations tests bench scripts observability

test-python: $(STAMP) helm ## pytest: unit + integration against the real Postgres/Redis/RabbitMQ
	$(BIN)/pytest -p no:cacheprovider

test-frontend: ## typecheck, lint, unit-test, build and browser-test the frontend
	$(MAKE) -C frontend test

test: lint test-frontend test-python ## everything CI runs (pytest last: its summary closes the log)

fuzz: $(STAMP) ## the API against its OpenAPI document for longer, random seed (IMGCONV_FUZZ_SEED, IMGCONV_FUZZ_MAX_EXAMPLES)
	@seed=$${IMGCONV_FUZZ_SEED:-$$(( (RANDOM << 15) | RANDOM ))}; echo "make fuzz: seed $$seed"; \
	  IMGCONV_FUZZ_SEED=$$seed IMGCONV_FUZZ_MAX_EXAMPLES=$${IMGCONV_FUZZ_MAX_EXAMPLES:-300} \
	  $(BIN)/pytest -p no:cacheprovider -o timeout=0 tests/integration/test_api_contract.py

helm: ## install helm v4 and kubectl into .tools/bin (the chart tests use them)
	bash scripts/install_helm.sh

kind: ## a kind cluster with the images, Traefik and the chart (helm --wait); prints the URL
	bash scripts/kind.sh up

kind-down: ## delete the kind cluster of `make kind`
	bash scripts/kind.sh down

images: ## build the imgconv and imgconv-frontend images (podman or docker) and print their sizes
	bash scripts/images/build.sh

bench: $(STAMP) ## speed benchmarks (not tests): prints a table
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } \
	  || { echo "make bench needs wrk: apt-get install wrk" >&2; exit 1; }
	$(PY) -m bench.run

bench-autoscale: $(STAMP) ## autoscaler simulation: our decision function vs a KEDA+HPA model
	$(PY) -m bench.autoscale

clean: ## remove local state (.data) and build output
	rm -rf .data build .mypy_cache .ruff_cache .pytest_cache
