# The two commands of the README: `make demo` (main job) and `make test`. Both set up from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-all bench
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.py scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

demo: install
	$(PY) examples/digits_editable_training.py

test: install
	$(PY) -m pytest -q tests

test-all: install
	$(PY) -m pytest -q -m "slow or not slow" tests

bench: install
	$(PY) bench/core_resnet18.py
