# `make run` and `make test` each do the whole set-up on a fresh Debian machine
# (system packages, a virtualenv, Hoard in editable mode) and are quick when
# everything is already there.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# axe-core (npm) for the console's accessibility checks, installed from its lock file.
A11Y := tests/a11y
A11Y_STAMP := $(A11Y)/node_modules/.package-lock.json

.PHONY: setup system run test lint bench clean

setup: system $(STAMP) $(A11Y_STAMP)

system:
	@bash scripts/install-system-packages.sh
	@bash scripts/install-image-patroni.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

$(A11Y_STAMP): $(A11Y)/package-lock.json
	npm ci --prefix $(A11Y) --no-audit --no-fund --loglevel=error
	@touch $@

run: setup
	$(VENV)/bin/hoard serve

lint: setup
	$(VENV)/bin/ruff check hoard tests bench
	$(VENV)/bin/mypy hoard
	$(VENV)/bin/lint-imports

# Two test files at a time (a file's tests share its clusters, so they stay
# together): most of a test's time is waiting on servers, not CPU.
test: lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: setup
	$(PY) bench/provision.py
	$(PY) bench/list.py
	$(PY) bench/dataplane.py
	$(PY) bench/backup.py
	$(PY) bench/failover.py
	$(PY) bench/control_plane.py
	$(PY) bench/observer_pass.py
	$(PY) bench/metrics_cost.py
	$(PY) bench/pooler.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache $(A11Y)/node_modules
