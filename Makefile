# `make demo` and `make test` set up everything they need on a fresh Debian machine.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test check lint types unit bench mosquitto postgresql chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin" command -v mosquitto >/dev/null 2>&1 || \
	  { echo "installing Mosquitto (apt-get)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }

# the store's tests start throwaway clusters with Debian's server binaries (initdb, pg_ctl)
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing PostgreSQL (apt-get)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# the console's browser tests drive Debian's Chromium (Playwright never downloads one)
# (and a CJK font, so that its screenshots show the Chinese pages)
chromium:
	@{ command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; } || \
	  { echo "installing Chromium and a CJK font (apt-get)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; }

demo: $(STAMP) mosquitto
	@sh config/demo.sh $(BIN)

test: check unit

check: $(STAMP)
	$(BIN)/ruff check alertd integrations tests bench
	$(BIN)/mypy

unit: $(STAMP) mosquitto postgresql chromium
	$(BIN)/pytest

bench: $(STAMP) mosquitto postgresql
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.panels
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.commit
	$(BIN)/python -m bench.store
	$(BIN)/python -m bench.failover
	$(BIN)/python -m bench.providers
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.lifesafety
	$(BIN)/python -m bench.e2e
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.sites

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
