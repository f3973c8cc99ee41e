# The two commands of the README: `make demo` (main job) and `make test`. Both set up from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo digits test test-all bench
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.py scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

# the main job: section 4.4 in small on CPU (Ding corpus, scripts/demo.sh); `make digits` is the core's quick demo
demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh runs/demo

digits: install
	$(PY) examples/digits_editable_training.py

test: install
	$(PY) -m pytest -q tests

test-all: install
	$(PY) -m pytest -q -m "slow or not slow" tests

bench: install
	$(PY) bench/core_resnet18.py
	$(PY) bench/vision_resnet18.py
	$(PY) bench/fairseq_transformer.py
