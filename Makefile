# Two commands for a fresh machine: `make demo` and `make test`. Each installs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: install demo test test-fast clean

# CPU torch must be installed before anything that depends on it, or pip pulls GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/video-adapter demo --out outputs/demo

test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 -q tests

# The quick subset while working (under a minute on 2 cores): every test not marked slow. CI runs `make test`.
test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 -q -m "not slow" tests

clean:
	rm -rf $(VENV) outputs
