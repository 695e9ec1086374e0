# Two commands for a fresh machine:  make setup  (venv + everything)  and  make test.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test

setup:
	./scripts/setup.sh $(VENV)

test:
	./scripts/test.sh $(VENV)
