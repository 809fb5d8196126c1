# ros_mmfusion: two commands on a fresh machine (no ROS install needed):
#   make demo   set everything up, generate the default synthetic data, run the suite on it
#   make test   set everything up, run the test suite
# Set-up is idempotent: the venv is rebuilt only when requirements, interfaces or packaging change.
# The venv gets the optional extra `fleet` too (requirements/fleet.txt: Ray), so `make test` runs the Ray test.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmfusion-setup
SETUP_INPUTS := requirements/ros-jazzy.txt requirements/python.txt requirements/dev.txt requirements/constraints.txt \
	requirements/stubs-nodeps.txt requirements/fleet.txt \
	setup.py setup.cfg package.xml tools/build_interfaces.py tools/install_site_hook.py tools/system_deps.sh \
	$(wildcard interfaces/*/msg/*.msg interfaces/*/CMakeLists.txt interfaces/*/package.xml)
PYTEST_ARGS ?=
# A child python of another venv must not inherit the ROS wheels' bootstrap marker.
unexport _ROS_WHEELS_BOOTSTRAP_COMPLETE

.PHONY: setup demo test lint clean help

help:
	@echo "make demo | make test | make setup | make lint | make clean"

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	bash tools/system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements/ros-jazzy.txt -r requirements/python.txt -r requirements/dev.txt \
		-r requirements/fleet.txt -c requirements/constraints.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/stubs-nodeps.txt
	$(PY) tools/build_interfaces.py
	$(PY) tools/install_site_hook.py
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import rclpy, vision_msgs.msg, tf2_msgs.msg, torch, onnxruntime, ray, ros_mmfusion" 
	touch $(STAMP)

demo: setup
	$(VENV)/bin/mmfusion demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check ros_mmfusion test tools
	$(VENV)/bin/mypy ros_mmfusion

clean:
	rm -rf $(VENV) build install log .pytest_cache demo_out
