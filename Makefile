# Two commands for a fresh machine:  make setup  (venv + everything, from the lock)  and  make test.
# CI (.ci/run) also runs make test-jazzy: lisa_ros/test/unit (no ROS) on a ROS Jazzy user's numpy/OpenCV/Pillow.
VENV ?= .venv

.PHONY: setup test test-jazzy test-newest lock demo

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

# README "Try it without a robot": lisa_node on the bundled tiny model, a rendered RGB-D scene, one goal; ends by itself.
# DDS stays on this machine unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise. DEMO_ARGS: launch
# arguments, e.g. DEMO_ARGS="model:=xinlai/LISA-7B-v1 adapter:= device:=cuda".
demo:
	AMENT_PREFIX_PATH="$(abspath $(VENV))$${AMENT_PREFIX_PATH:+:$$AMENT_PREFIX_PATH}" \
	ROS_AUTOMATIC_DISCOVERY_RANGE="$${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}" \
	$(VENV)/bin/ros2 launch lisa_ros demo.launch.py $(DEMO_ARGS)
