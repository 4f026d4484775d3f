# Keel's scripted quality gates: the same commands locally and in CI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run cluster test lint check bench faults clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python run.py

# Three instances behind nginx on :8080; Redis on 127.0.0.1:6379 unless KEEL_REDIS__URL says.
cluster: $(STAMP)
	KEEL_REDIS__URL=$${KEEL_REDIS__URL:-redis://127.0.0.1:6379/0} $(BIN)/python run.py cluster

test: $(STAMP)
	$(BIN)/python -m pytest

# Lint: ruff, the formatter, mypy strict on app/ and run.py, mypy lenient on tests/.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests

# What CI runs (.ci/run): lint first, so a lint failure keeps a change from landing.
check: lint test

bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x /usr/sbin/nginx || command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq nginx)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/cluster.py

# The fault report (bench/faults.py, README "Reliability"): each dependency broken in
# turn under load; about 5 minutes. Needs PostgreSQL and RabbitMQ running (as for
# `make test`); starts its own redis-server, nginx and Keel processes. Not run by CI.
faults: $(STAMP)
	test -x /usr/sbin/nginx || command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq nginx)
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	$(BIN)/python bench/faults.py $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
