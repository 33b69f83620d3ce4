# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint prometheus clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo

# Tests that need a real Prometheus run when its binary is present; under CI=true it is
# installed from Debian when missing, and those tests fail rather than skip.
prometheus:
	@if ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$CI" = "true" ] || [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian package prometheus"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else \
	    echo "prometheus not found: tests that need it will skip (apt-get install prometheus)"; \
	  fi; \
	fi

test: $(STAMP) prometheus
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) driftline-demo .pytest_cache .ruff_cache
