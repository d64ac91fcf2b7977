# Entry points for developers and CI. `scripts/setup.sh` installs what is
# missing (system packages, .venv) and returns in well under a second when
# everything is already there, so targets call it freely.
#
#   make test PYTEST_ARGS='-k tcache -x'    extra pytest arguments
#   make test PYTEST_NO_TESTS_OK=1          pytest collecting nothing (exit 5) is not an error

VENV        := .venv
PY          := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m multiheap demo

test:
	bash scripts/setup.sh --tests
	@echo "$(PY) -m pytest -q tests $(PYTEST_ARGS)"
	@rc=0; $(PY) -m pytest -q tests $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ] && [ -n "$(PYTEST_NO_TESTS_OK)" ]; then \
		echo "make test: pytest collected no tests (PYTEST_NO_TESTS_OK set)"; rc=0; \
	fi; \
	exit $$rc

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/run.py
