# Two commands for a fresh machine:  make setup  (venv + everything)  and  make test.
VENV ?= .venv

.PHONY: setup test

setup:
	./scripts/setup.sh $(VENV)

test:
	./scripts/test.sh $(VENV)
