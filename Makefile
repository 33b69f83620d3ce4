# The two commands a newcomer needs: `make demo` and `make test`.
#
# Both run the product as users install it: a wheel built from this checkout, installed
# non-editable. `make test` runs the suite from a copy of tests/ outside the checkout, so a
# module or data file missing from the wheel fails the run instead of being found in the
# source tree. Contributors who want an editable install for quick runs: `make dev`.
PYTHON ?= python3
WHEEL_DIR := build/wheel
SOURCES := Makefile pyproject.toml setup.py $(shell find driftline instrumentation processor exporters \
	collector-config -type f -not -path '*/__pycache__/*' 2>/dev/null)
WHEEL_STAMP := $(WHEEL_DIR)/.built
# The wheel's file name, found by the shell once it is built.
WHEEL = $$(ls $(WHEEL_DIR)/driftline-*.whl)

DEMO_VENV := .venv
TEST_VENV := .venv-test
DEV_VENV := .venv-dev

.PHONY: demo test wheel smoke suite dev fuzz lint prometheus system-packages js-sdk clean

# setuptools stages the package in build/lib and keeps what it staged before: a module
# deleted or moved in the source would still ship, so the staging goes too.
$(WHEEL_STAMP): $(SOURCES)
	rm -rf $(WHEEL_DIR) build/lib build/bdist.*
	$(PYTHON) -m pip wheel --quiet --no-deps --wheel-dir $(WHEEL_DIR) .
	touch $@

wheel: $(WHEEL_STAMP)

# The demo needs the `demo` extra only (pandas, pyarrow, scikit-learn): no torch, no pytest.
$(DEMO_VENV)/.installed: $(WHEEL_STAMP)
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/pip install --quiet "$(WHEEL)[demo]"
	$(DEMO_VENV)/bin/pip install --quiet --force-reinstall --no-deps "$(WHEEL)"
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/driftline demo

# The suite's dependencies once; the freshly built wheel over them on every run.
$(TEST_VENV)/.installed: pyproject.toml | $(WHEEL_STAMP)
	test -x $(TEST_VENV)/bin/python || $(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/pip install --quiet "$(WHEEL)[dev]"
	touch $@

# Tests that need a real Prometheus or a headless Chromium (the HTML report) run when the
# binary is present; under CI=true (or as root) the missing Debian packages are installed in
# one apt-get call, and under CI=true those tests fail rather than skip. Each entry is a
# package named after its command, or `command:package` (Java for the Spark profile tests).
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium java:default-jre-headless

system-packages:
	@missing=""; \
	for entry in $(SYSTEM_PACKAGES); do \
	  command -v $${entry%%:*} >/dev/null 2>&1 || missing="$$missing $${entry#*:}"; \
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

# The OpenTelemetry JavaScript SDK for tests/processor/otlp_receiver/test_js_sdk_interop.py,
# exactly as pinned by tests/js/package-lock.json (node and npm must be on PATH).
JS_STAMP := tests/js/node_modules/.installed

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

js-sdk: $(JS_STAMP)

# A new user's first hour, from the wheel in a fresh virtualenv outside the checkout: the
# bare install runs the app side and the processor; the demo extra runs the demo.
smoke: $(WHEEL_STAMP)
	$(PYTHON) tests/smoke/wheel_smoke.py "$(WHEEL)"

# The whole suite against the installed wheel, from a copy of the tests outside the checkout.
# Most of its time is spent waiting on real processes (windows closing, servers draining), so
# it runs on several workers, one test file per worker at a time so that module fixtures (a
# processor, a Prometheus) start once: TEST_WORKERS=1 runs it in one process.
TEST_WORKERS ?= 4
suite: $(WHEEL_STAMP) $(TEST_VENV)/.installed system-packages js-sdk
	$(TEST_VENV)/bin/pip install --quiet --force-reinstall --no-deps "$(WHEEL)"
	$(TEST_VENV)/bin/ruff check .
	run=$$(mktemp -d -t driftline-test-XXXXXX) && cp -r tests docs pyproject.toml "$$run/" && \
	  wheel="$(CURDIR)/$(WHEEL)" && cd "$$run" && \
	  DRIFTLINE_CHECKOUT="$(CURDIR)" DRIFTLINE_WHEEL="$$wheel" \
	  "$(CURDIR)/$(TEST_VENV)/bin/python" -m pytest -q -rs -p no:cacheprovider \
	    -n $(TEST_WORKERS) --dist loadfile --durations=15; \
	  status=$$?; rm -rf "$$run"; exit $$status

test: smoke suite

# An editable install with every tool, for contributors and the benchmarks.
dev:
	test -x $(DEV_VENV)/bin/python || $(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install --quiet --upgrade pip
	$(DEV_VENV)/bin/pip install --quiet -e ".[dev]"

# The long structured fuzz (tests/test_fuzz.py with FUZZ_EXAMPLES examples, a few minutes);
# the suite runs its short version.
FUZZ_EXAMPLES ?= 3000
fuzz: dev
	DRIFTLINE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(DEV_VENV)/bin/python -m pytest -q -s tests/test_fuzz.py

lint: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) $(DEV_VENV) build driftline-demo .pytest_cache .ruff_cache
