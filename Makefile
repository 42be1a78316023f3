# The README's two commands: `make run` (install what a build needs, then build the embedded
# default model for H100 FP8) and `make test` (install everything, then the whole test
# suite; what CI runs). Each install has its own stamp: `run` installs `.[hf]` only (no
# pytest, ModelOpt or llama-cpp-python, which compiles from source for minutes), `test`
# adds `.[all]`. torch is pinned: 2.13.0 is the local CPU build, an unpinned torch pulls
# CUDA wheels.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup setup-run run test test-fast bench clean

setup: $(VENV)/.installed
setup-run: $(VENV)/.installed-hf

$(VENV)/.installed-hf: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[hf]"
	touch $@

$(VENV)/.installed: $(VENV)/.installed-hf
	$(BIN)/python -m pip install --quiet -e ".[all,tensorrt-rtx]"
	touch $@

run: setup-run
	$(BIN)/inferc build --target h100 --quant fp8 --force

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python benchmarks/bench_fp8.py
	$(BIN)/python benchmarks/bench_4bit.py
	$(BIN)/python benchmarks/bench_gguf.py

clean:
	rm -rf $(VENV) out bench_results
