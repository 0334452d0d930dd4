# `make demo` and `make test` set up everything they need on a fresh Debian machine.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test check lint types unit bench mosquitto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin" command -v mosquitto >/dev/null 2>&1 || \
	  { echo "installing Mosquitto (apt-get)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }

demo: $(STAMP) mosquitto
	@sh config/demo.sh $(BIN)

test: check unit

check: $(STAMP)
	$(BIN)/ruff check alertd integrations tests bench
	$(BIN)/mypy

unit: $(STAMP) mosquitto
	$(BIN)/pytest

bench: $(STAMP) mosquitto
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.panels
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.lifesafety
	$(BIN)/python -m bench.e2e

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
