# The two commands a new user runs (see README): `make demo` and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG := configs/demo.yaml

.PHONY: demo test test-slow lint format bench bench-accuracy accurate kfold clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# --overwrite: a rerun of the demo trains its runs again (a run is never replaced unasked)
demo: venv
	$(PY) augment_offline.py --config $(DEMO_CONFIG)
	$(PY) train.py --config $(DEMO_CONFIG) --phase head --overwrite
	$(PY) train.py --config $(DEMO_CONFIG) --phase full --overwrite
	$(PY) ensemble.py --config $(DEMO_CONFIG) --out work/demo/submission.csv

# configs/accurate.yaml: the k-fold preset's Lite0 fold runs plus Lite1 fold runs, ensembled.
#   make accurate DATA=photos/train TEST=photos/test [WORKDIR=work/accurate]
WORKDIR ?= work/accurate
ACCURATE := --config configs/accurate.yaml --workdir $(WORKDIR)
LITE1 := --run lite1 --backbone efficientnet_lite1
accurate: venv
	for phase in head probe full; do \
	  $(PY) train.py $(ACCURATE) --phase $$phase --data $(DATA) || exit 1; \
	  $(PY) train.py $(ACCURATE) --phase $$phase $(LITE1) || exit 1; \
	done
	$(PY) ensemble.py $(ACCURATE) --test $(TEST) --out $(WORKDIR)/submission.csv

# configs/kfold.yaml: five Lite0 models of the original images, one per fold, averaged.
#   make kfold DATA=photos/train TEST=photos/test [KFOLD_WORKDIR=work/kfold]
KFOLD_WORKDIR ?= work/kfold
KFOLD := --config configs/kfold.yaml --workdir $(KFOLD_WORKDIR)
kfold: venv
	$(PY) train.py $(KFOLD) --phase head --data $(DATA)
	$(PY) train.py $(KFOLD) --phase probe
	$(PY) train.py $(KFOLD) --phase full
	$(PY) ensemble.py $(KFOLD) --test $(TEST) --out $(KFOLD_WORKDIR)/submission.csv

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# Test files run on TEST_WORKERS processes (pytest-xdist; a file's tests stay together,
# sharing its fixtures): the suite is mostly single-threaded Python, so 2 cores halve it.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: lint
	$(PYTEST)

# The tests marked slow (child processes, kill states, every weights file): CI runs them too.
test-slow: venv
	$(PYTEST) -m slow

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/training.py --photos ../shared/datasets/clothing8/train
	$(PY) benchmarks/ensemble.py

# The default pipeline on real photos (clothing8), scored on its test set: about 40 min.
bench-accuracy: venv
	$(PY) benchmarks/accuracy.py

clean:
	rm -rf work data/demo
