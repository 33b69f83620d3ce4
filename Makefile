# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint prometheus system-packages clean fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo

# Tests that need a real Prometheus or a headless Chromium (the HTML report) run when the
# binary is present; under CI=true (or as root) the missing Debian packages are installed in
# one apt-get call, and under CI=true those tests fail rather than skip.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium

system-packages:
	@missing=""; \
	for package in $(SYSTEM_PACKAGES); do \
	  command -v $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$CI" = "true" ] || [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "not found:$$missing: tests that need them will skip (apt-get install$$missing)"; \
	  fi; \
	fi

# Kept for existing habits and CI scripts: installs whatever of the above is missing.
prometheus: system-packages

test: $(STAMP) system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) driftline-demo .pytest_cache .ruff_cache

# The long structured fuzz (tests/test_fuzz.py with LONG_EXAMPLES examples, a few minutes);
# the test suite runs its short version.
FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	DRIFTLINE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -s tests/test_fuzz.py
