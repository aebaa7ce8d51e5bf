# One-command setup, demo and tests.  Everything lands in .venv/ at the repo root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
OUT    ?= out/demo
# DDS stays on this machine in every process that may start ROS nodes.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

VENV_ABS := $(abspath $(VENV))
SOURCES := $(shell find mcucoder_ros msg launch config scripts -type f -not -path '*__pycache__*') \
	setup.py package.xml CMakeLists.txt $(wildcard models/default/*)

.PHONY: setup demo test lint bench training-data train export clean

setup: $(VENV)/.setup-done

$(VENV)/.deps-done: setup.py Makefile requirements-ros.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is for training and some tests only (never at run time); this machine kind
	# provides the CPU build 2.13.0 locally.
	# ROS 2 Kilted core from PyPI wheels (requirements-ros.txt); a real ROS install works too.
	$(PIP) install -q "torch==2.13.0" -r requirements-ros.txt
	$(PIP) install -q ".[train,test]"
	touch $@

# Messages are generated with ament_cmake/rosidl and installed, with the Python package,
# into the venv prefix, so that .venv/bin/... works without sourcing anything.
$(VENV)/.setup-done: $(VENV)/.deps-done $(SOURCES)
	mkdir -p build
	PATH=$(VENV_ABS)/bin:$$PATH AMENT_PREFIX_PATH=$(VENV_ABS) cmake -S . -B build/ros -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_INSTALL_PREFIX=$(VENV_ABS) -DPython3_EXECUTABLE=$(VENV_ABS)/bin/python \
	  -DCMAKE_PROJECT_INCLUDE=$(abspath cmake/ros_wheels_fix.cmake) > build/cmake-configure.log 2>&1 \
	  || (cat build/cmake-configure.log; false)
	PATH=$(VENV_ABS)/bin:$$PATH cmake --build build/ros -j2 > build/cmake-build.log 2>&1 || (cat build/cmake-build.log; false)
	cmake --install build/ros > build/cmake-install.log
	$(PIP) install -q --no-deps --force-reinstall .
	touch $@

# The main job: the ROS pipeline on the bundled clip under a bandwidth trace, then the
# codec's rate-distortion report against M-JPEG on the bundled held-out photos.
demo: setup
	@mkdir -p $(OUT)
	$(VENV)/bin/mcucoder-ros demo --out $(OUT)
	$(VENV)/bin/mcucoder eval data/samples --json $(OUT)/rd.json --plot $(OUT)/rd.png
	@echo; echo "Demo results in $(OUT)/:"; \
	 echo "  side_by_side.mp4  source | decoded, with k and bitrate"; \
	 echo "  bitrate.png       available bandwidth, sent bitrate, MS-SSIM and k over time"; \
	 echo "  summary.json      frames in/decoded, mean bpp, mean MS-SSIM, latency p50/p95, link use per segment"; \
	 echo "  rd.json, rd.png   rate-distortion of MCUCoder vs JPEG on the bundled photos"

test: setup
	$(VENV)/bin/pytest -q test

# ruff.toml says which rules and why; the C code is held to -Wall -Wextra -Werror by its Makefile.
lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/mcucoder bench --json out/bench.json

# --- model work (long; see docs/training.md) -------------------------------------------
training-data: setup
	mkdir -p data/debs data/debian
	cd data/debs && apt-get download mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers
	for f in data/debs/*.deb; do dpkg -x $$f data/debian; done
	$(VENV)/bin/mcucoder prepare-data --out .traindata

train: setup
	$(VENV)/bin/mcucoder train .traindata --out runs/default --minutes 180 --batch 16 --heldout .traindata/heldout_224.npz

export: setup
	$(VENV)/bin/mcucoder export runs/default/weights.pt .traindata --out models/default
	$(PY) -m mcucoder_ros.codec.vectors test/vectors

clean:
	rm -rf $(VENV) out build install log
