# The whole developer workflow. Everything runs inside .venv, which `make dev` creates.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,train,hf,ray,plot

.PHONY: dev build-dev demo demo-iterate example test test-rust test-python check-wheel fuzz lint format bench bench-ray clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip maturin

# Compiles the Rust core (release) into the package and installs it editable, with extras.
dev: $(VENV)/bin/python
	$(VENV)/bin/maturin develop --release --extras $(EXTRAS)

# Recompiles the native module only, after a Rust change.
build-dev: $(VENV)/bin/python
	$(VENV)/bin/maturin develop --release --skip-install

# Scored responses -> pairs -> a few DPOv2 steps on the tiny in-code model -> a saved checkpoint,
# on CPU, in about a minute.
demo: dev
	$(VENV)/bin/dpov2 align examples/align_tiny.yaml

# Two rounds of iterative DPO (generate, score, pair, train) on the tiny models, on CPU; the
# report lands in demo-out/iterate_tiny/report.json and report.png.
demo-iterate: dev
	$(VENV)/bin/dpov2 iterate examples/iterate_tiny.yaml --plot

example: dev
	$(PY) examples/select_pairs.py

test: dev test-rust test-python check-wheel

test-rust:
	cargo test --workspace --exclude dpov2-python

test-python:
	$(PY) -m pytest

# The reader fuzz test at length (the default run in `make test` is a few batches).
FUZZ_EXAMPLES ?= 500
fuzz: dev
	DPOV2_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/test_fuzz_readers.py -q

# An abi3 wheel installs and works in a fresh virtual environment with no Rust toolchain.
check-wheel: $(VENV)/bin/python
	bash scripts/check_wheel.sh $(PY)

# Needs the native module built (make dev): stubtest checks the hand-written _core.pyi
# against it.
lint: $(VENV)/bin/python
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy python/dpov2
	$(PY) -m mypy.stubtest dpov2._core

format: $(VENV)/bin/python
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

# The dataset benchmark's contenders (DuckDB, polars) come with the bench extra.
bench: EXTRAS := $(EXTRAS),bench
bench: dev
	$(PY) benches/bench_pairing.py
	$(PY) benches/bench_pair_dataset.py

# Pairing on Ray Data against the single-machine path (1M prompts; datasets in bench-out/).
bench-ray: dev
	$(PY) benches/bench_ray_pairing.py

clean:
	rm -rf target dist demo-out $(VENV) .pytest_cache .hypothesis
