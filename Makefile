# The two commands: `make run` (the whole service) and `make test` (the whole suite);
# `make test-unit` runs the tests that need no server, in seconds; `make test-shell` the
# workflow on a Temporal dev server with in-memory activities, in about a minute.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-shell lint typecheck contract histories chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m starter.dev

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Record the workflow histories the replay test replays, again after each deliberate change of
# the workflow, in a commit of its own (docs/versioning.md).
histories: $(STAMP)
	$(BIN)/python -m tests.histories.record

# The UI test drives Debian's Chromium (headless); installed here when missing (needs root).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the UI test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Every tier: tests/unit (seconds, no servers), tests/integration (a real Temporal server and
# PostgreSQL), tests/system (crashes, outages, storms, the UI in Chromium).
# Two processes (pytest-xdist), each with its servers; an idle one takes tests from the other.
test: $(STAMP) lint typecheck chromium
	$(BIN)/pytest -n 2 --dist worksteal

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The workflow shell on the dev server with in-memory activities: no PostgreSQL, about a minute.
test-shell: $(STAMP)
	$(BIN)/pytest tests/shell

# Regenerate the published JSON Schemas under contract/ from the models (commit the result).
contract: $(STAMP)
	$(BIN)/python -m starter.client.schemas

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache .hypothesis
