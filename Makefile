# Fanout: every command a newcomer, a developer or CI needs. Each one runs the (quick, idempotent) setup first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-fast bench lint clean distclean

setup:
	@bash deploy/setup.sh

run: setup  ## the whole platform on this machine: embedded NATS, SQLite in ./var
	$(PY) -m services.launcher

test: setup  ## the whole suite, end-to-end tests against real peers included
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

test-fast: setup  ## everything but the e2e tests
	@$(VENV)/bin/pytest -m "not e2e" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-fast: pytest collected no tests (exit 5): failing" >&2; fi; \
	exit $$rc

bench: setup  ## prints figures against nginx-rtmp and ffmpeg measured in the same run
	$(PY) bench/fanout_bench.py $(BENCH_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict shared services

clean:  ## caches and build leftovers; keeps .venv and ./var (your data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info bench/.cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean  ## also the virtualenv
	rm -rf $(VENV)
