# Everything a fresh machine needs: `make demo` and `make test` build the virtual environment first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV := .venv-dev
DEV_BIN := $(DEV)/bin
DEV_STAMP := $(DEV)/.installed
TOOLS_STAMP := $(DEV)/.tools-installed
DEB_STAMP := $(DEV)/.debian-packages

.PHONY: help venv demo test lint soak bench mutation lock clean

help:  ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

venv: $(STAMP)  ## Create .venv with the pinned runtime requirements: what the three scripts need, no more

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	touch $(STAMP)

# The test tools (pytest, ruff, SeaweedFS...) and the runtime requirements again go into .venv-dev. The tests
# start the scripts with .venv's python (RUNTIME_PYTHON): only what requirements.txt installs, as on a server,
# so a missing runtime requirement fails a test, and no tool's imports slow every process the tests start.
$(DEV_STAMP): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(DEV)
	$(DEV_BIN)/pip install --quiet --upgrade pip
	$(DEV_BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(DEV_STAMP)

$(TOOLS_STAMP): $(DEV_STAMP) requirements-tools.txt
	$(DEV_BIN)/pip install --quiet -r requirements-tools.txt -c constraints.txt
	touch $(TOOLS_STAMP)

demo: $(STAMP)  ## Run the whole flow locally against the emulator
	$(BIN)/python demo.py

# The deployment tests run promtool, a real Prometheus and a real nginx: install them where they are missing
# (CI runs as root with apt working). The tests start their own instances on loopback, whatever apt starts.
$(DEB_STAMP): $(DEV_STAMP)
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
	    || ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus nginx; \
	fi
	touch $(DEB_STAMP)

test: export RUNTIME_PYTHON = $(CURDIR)/$(BIN)/python
test: $(STAMP) $(DEV_STAMP) $(DEB_STAMP)  ## Lint, the in-process tests, the rest six at a time, then the pacing tests alone
	$(DEV_BIN)/ruff check .
	@# Where PYTHONDONTWRITEBYTECODE is set (CI's machines), each process the tests start would compile it anew.
	$(BIN)/python -m compileall -q notification_flow
	$(DEV_BIN)/python -m pytest tests/unit
	$(DEV_BIN)/python -m pytest -n 6 --dist worksteal -m "not paced" tests/integration tests/emulator
	$(DEV_BIN)/python -m pytest -m paced tests/integration

soak: export RUNTIME_PYTHON = $(CURDIR)/$(BIN)/python
soak: $(STAMP) $(DEV_STAMP)  ## Soak (~8 min): 1,000 jobs under every fault: sqlite, DELETE_AFTER_STORE; PostgreSQL, 2 servers; the same on S3
	$(DEV_BIN)/python -m tests.soak --jobs 1000 --database sqlite --servers 1 --delete-after-store
	$(DEV_BIN)/python -m tests.soak --jobs 1000 --database postgresql --servers 2
	$(DEV_BIN)/python -m tests.soak --jobs 1000 --database postgresql --servers 2 --storage s3

bench: export RUNTIME_PYTHON = $(CURDIR)/$(BIN)/python
bench: $(STAMP) $(TOOLS_STAMP)  ## Benchmarks (~15 min): writes docs/benchmarks-results.md, -history.md and -s3.md
	$(DEV_BIN)/python -m bench

# mutmut copies the package into mutants/ and runs the unit tests against each mutant there (pyproject.toml's
# [tool.mutmut]); a fresh copy each time, so changed tests are always seen. Scope and bar: tests/mutation_score.py.
mutation: $(TOOLS_STAMP)  ## Mutation test the guard, bodies, lifecycle and mover; fails under 90% killed
	rm -rf mutants && mkdir mutants
	set -f; $(DEV_BIN)/mutmut run --max-children 2 $$($(DEV_BIN)/python -m tests.mutation_score --scope) \
	  >mutants/run.log 2>&1 || { tail -c 2000 mutants/run.log; exit 1; }
	$(DEV_BIN)/mutmut results --all true | $(DEV_BIN)/python tests/mutation_score.py

lint: $(DEV_STAMP)  ## ruff
	$(DEV_BIN)/ruff check .

lock: $(TOOLS_STAMP)  ## Re-pin every installed package into constraints.txt
	$(DEV_BIN)/pip freeze --exclude-editable > constraints.txt

clean:  ## Remove both venvs and generated files
	rm -rf $(VENV) $(DEV) .pytest_cache .ruff_cache .hypothesis demo
