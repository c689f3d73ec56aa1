# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch/torchvision pair tested on this project's machines; override for your CUDA/CPU build, e.g.
#   make demo TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.fertrain-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install demo test test-fast model-card bench-data bench-train clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: install, then train+test MSCM on the embedded real video and predict a timeline over it
## (ckpt_path=last: a second `make demo` finishes an interrupted demo run, or prints the finished one's summary)
demo: install
	$(PY) -m fertrain ckpt_path=last

## make test: install, then run the whole test suite (slow tests included)
test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

model-card: install
	$(PY) -m fertrain.bench.model_card

## make bench-data / bench-train: throughput benchmarks (Markdown tables; see python -m fertrain.bench.data --help, python -m fertrain.bench.train --help)
bench-data: install
	$(PY) -m fertrain.bench.data $(BENCH_ARGS)

bench-train: install
	$(PY) -m fertrain.bench.train $(BENCH_ARGS)

clean:
	rm -rf logs outputs multirun .cache .pytest_cache
