# The two commands a newcomer needs (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: deps venv test run broker demo bench lint clean requirements vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

deps: venv
	./scripts/install-system-deps

## Run every test (SQLite and PostgreSQL, real Prometheus, real HTTP).
test: deps
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## Serve the broker on the embedded SQLite default (http://127.0.0.1:8080).
broker: venv
	$(BIN)/tenant-metrics db upgrade
	BROKER_USERNAME=$${BROKER_USERNAME:-broker} BROKER_PASSWORD=$${BROKER_PASSWORD:-broker-password-change-me} \
	  $(BIN)/tenant-metrics broker

## The whole system locally: fake Aiven + Cloud Controller, sd, Prometheus, broker, gateway.
demo: deps
	$(BIN)/tenant-metrics demo

run: demo

## Static checks (ruff, mypy strict on the packages listed in pyproject.toml).
lint: venv
	$(BIN)/pip install -q -e '.[test,dev]'
	$(BIN)/ruff check --select E4,E7,E9,F,I tenant_metrics broker sd gateway migrations bench tests
	$(BIN)/mypy

## Exact, hashed pins for cf push, from pyproject.toml (needs PyPI).
requirements: venv
	$(BIN)/pip install -q -e '.[test,dev]'
	CUSTOM_COMPILE_COMMAND="make requirements" $(BIN)/pip-compile -q --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.txt pyproject.toml

## Wheels for an air-gapped foundation: cf push then installs from vendor/ without PyPI.
VENDOR ?= vendor
vendor:
	rm -rf $(VENDOR)
	$(PYTHON) -m pip download -q --no-deps --require-hashes -r requirements.txt -d $(VENDOR) \
	  --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	  --python-version 3.11 --implementation cp

bench: deps
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache tenant-metrics.sqlite3*
