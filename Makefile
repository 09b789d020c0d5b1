# Two commands a newcomer types: `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv venv-test browser compiler docs examples clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -e .

venv-test: $(BIN)/python
	$(BIN)/pip install -e ".[test]"

demo: venv
	$(BIN)/scratchllm train --preset shakespeare-char-speedrun --out runs/shakespeare-char
	$(BIN)/scratchllm generate --model runs/shakespeare-char --prompt "ROMEO:" --max-new-tokens 400 --temperature 0.8 --seed 0

# two pytest workers on two cores: one BLAS/torch thread each, so they do not fight over the cores.
# The suite runs with the numba kernels, required (SCRATCHLLM_KERNELS=numba: a missing numba fails);
# the areas whose ops have a kernel then run again on NumPy alone (tests/kernel_paths also compares
# the two paths directly). SCRATCHLLM_NO_SKIP=1 turns any skipped test into a failure
# (tests/conftest.py) and -rs prints the reason of every skip.
ONE_THREAD := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PYTEST     := $(ONE_THREAD) SCRATCHLLM_NO_SKIP=1 $(BIN)/python -m pytest -n 2 -rs
test: venv-test browser compiler
	SCRATCHLLM_KERNELS=numba $(PYTEST) tests
	SCRATCHLLM_KERNELS=numpy $(PYTEST) tests/nn tests/optim tests/models tests/train tests/properties

# tests/serve drive the chat page in Debian's chromium (Playwright is pointed at /usr/bin/chromium;
# no browser download): install it when missing (CI runs `make test` as root on Debian)
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium chromium-driver)

# tests/bench compile the torch.compile peer: inductor builds C++ with g++ and Python's headers
compiler:
	command -v g++ >/dev/null 2>&1 || (apt-get update && apt-get install -y g++)
	$(BIN)/python -c "import sysconfig, os, sys; h = os.path.join(sysconfig.get_paths()['include'], 'Python.h'); \
	  sys.exit(0 if os.path.exists(h) else 'Python.h missing at ' + h + ': install the python3-dev package')"

# the course (docs/): its site with MkDocs + Material, --strict (any warning or broken link fails).
# The chapters' code runs in `make test` (tests/docs); `python docs/build_pictures.py` redraws docs/img.
docs: $(BIN)/python
	$(BIN)/pip install -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# the examples, with their extra dependency (scikit-learn, for the digits)
examples: $(BIN)/python
	$(BIN)/pip install -e ".[examples]"
	$(BIN)/python examples/scalar_mlp.py
	$(BIN)/python examples/digits_mlp.py

clean:
	rm -rf $(VENV) build src/*.egg-info site
