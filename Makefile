# Two commands for a fresh machine:  make setup  (venv + everything, from the lock)  and  make test.
# CI (.ci/run) also runs make test-jazzy: the ROS-free tests on a ROS Jazzy user's numpy/OpenCV/Pillow.
VENV ?= .venv

.PHONY: setup test test-jazzy test-newest lock

setup:
	./scripts/setup.sh $(VENV)

test:
	./scripts/test.sh $(VENV)

test-jazzy:
	./scripts/test_jazzy.sh

test-newest:
	./scripts/test_newest.sh

lock:
	./scripts/lock.sh
