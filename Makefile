# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv first and are
# idempotent: the install step re-runs only when a requirements or project file changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-all bench docs verify clean

$(STAMP): requirements.txt requirements-nodeps.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "DeepCoder needs Python 3.11+ (found " + sys.version.split()[0] + ")"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@command -v bwrap >/dev/null || echo "note: bubblewrap (bwrap) is missing; the sandbox refuses to run untrusted code without it (apt-get install -y bubblewrap)"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/deepcoder pipeline --profile demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

verify: $(STAMP)
	$(BIN)/deepcoder verify

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sandbox.py
	$(BIN)/python benchmarks/bench_generation.py
	$(BIN)/python benchmarks/bench_serve.py

docs: $(STAMP)
	$(BIN)/deepcoder config reference > docs/configuration.md

clean:
	rm -rf $(VENV) runs .pytest_cache
