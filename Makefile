# One-command setup, demo and tests.  Everything lands in .venv/ at the repo root.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
OUT    ?= out/demo
# DDS stays on this machine in every process that may start ROS nodes.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup demo test bench eval training-data train export vectors clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch is needed for training and some tests only (never at run time); the CPU
	# build 2.13.0 is what this machine kind provides locally.
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[train,test]"
	touch $@

# The main job on bundled sample data: rate-distortion report against M-JPEG.
demo: setup
	@mkdir -p $(OUT)
	$(VENV)/bin/mcucoder eval data/samples --json $(OUT)/rd.json --plot $(OUT)/rd.png
	$(VENV)/bin/mcucoder encode data/samples/astronaut.png -o $(OUT)/astronaut_k6.mcf --channels 6
	$(VENV)/bin/mcucoder decode $(OUT)/astronaut_k6.mcf -o $(OUT)/astronaut_k6.png
	@echo; echo "Demo results in $(OUT)/: rd.json (RD numbers, BD-rates), rd.png (RD curves),"; \
	 echo "astronaut_k6.mcf (6-channel bitstream) and astronaut_k6.png (its decoding)."

test: setup
	$(PY) -m pytest -q test

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
