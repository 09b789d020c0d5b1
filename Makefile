# Two commands a newcomer types: `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv venv-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -e .

venv-test: $(BIN)/python
	$(BIN)/pip install -e ".[test]"

demo: venv
	$(BIN)/scratchllm train --preset shakespeare-char --out runs/shakespeare-char
	$(BIN)/scratchllm generate --model runs/shakespeare-char --prompt "ROMEO:" --max-new-tokens 400 --temperature 0.8 --seed 0

# two pytest workers on two cores: one BLAS/torch thread each, so they do not fight over the cores
test: venv-test
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) build src/*.egg-info
