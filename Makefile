# Two commands do everything: `make demo` and `make test`. Every target bootstraps what
# it needs (a venv from requirements.lock, node_modules from package-lock.json) and is
# idempotent: a second run does no work.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export SOLCX_BINARY_PATH := $(CURDIR)/.solcx
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all bootstrap system-deps demo-deps screenshots demo test test-fast compile lock bench audit fuzz iot-check ha-core ha-test light-web3-8 clean help

help:
	@echo "make demo     run a full request -> bids -> settlement -> withdraw cycle on a local chain"
	@echo "make test     install what is missing and run the whole test suite"
	@echo "make bench    benchmarks against local chains; writes bench/report.json and docs/performance.md (BENCH_ARGS=--full for the long run)"
	@echo "make audit    slither static analysis, then make fuzz (CI runs it); fails on undocumented High/Medium findings"
	@echo "make fuzz     schemathesis against the running web app with sign-in on (FUZZ_EXAMPLES=500 for a long run)"
	@echo "make compile  recompile contracts/ into build/ and the package artifacts"
	@echo "make screenshots  refresh docs/img/ui-*.png from the browser tests"
	@echo "make iot-check  (root) the consumer in an emulated aarch64 Debian root against a native chain (docs/iot.md)"
	@echo "make ha-test  (optional) the Home Assistant driver against a real HA core in a Python 3.13 side venv (docs/devices.md)"
	@echo "make light-web3-8  the consumer's light install on web3 8, in a throwaway venv (build/venv-web3-8)"
	@echo "make lock     regenerate requirements.lock from pyproject.toml"
	@echo "make clean    remove the venv, node_modules and caches"

# The shared venv keeps brownie's web3 7.16; the light install (pyproject: web3 <9) is checked
# on web3 8 in a venv of its own, with nothing but web3 and python-dotenv.
light-web3-8: bootstrap
	@test -x build/venv-web3-8/bin/python || $(PYTHON) -m venv build/venv-web3-8
	@build/venv-web3-8/bin/pip install --quiet "web3==8.0.0" "python-dotenv==0.16.0"
	@DR_WEB3_8_PYTHON=$(CURDIR)/build/venv-web3-8/bin/python $(PY) -m pytest -q -p no:randomly tests/tooling/test_light_web3_8.py

bootstrap: $(VENV)/.stamp node_modules/.stamp $(SOLCX_BINARY_PATH)/solc-v0.8.24

$(VENV)/.stamp: requirements.lock pyproject.toml
	@echo "==> Python environment ($(VENV))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --quiet --upgrade "pip>=23"
	@$(PIP) install --quiet -r requirements.lock
	@$(PIP) install --quiet --no-deps -e .
	@touch $@

# npm 11 blocks install scripts unless approved; ganache's native add-ons then fall back
# to pure JavaScript, which is harmless (see README).
node_modules/.stamp: package-lock.json
	@echo "==> JavaScript tools (ganache, anvil, solcjs)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(SOLCX_BINARY_PATH)/solc-v0.8.24: | $(VENV)/.stamp
	@$(PY) -c "from demand_response.compiler import install_solcx_shim; install_solcx_shim()"

# While it runs, the demo's and its daemons' metrics: curl 127.0.0.1:9108/metrics (empty: none).
DEMO_METRICS_PORT ?= 9108
demo: bootstrap demo-deps
	@$(PY) -m demand_response demo $(if $(DEMO_METRICS_PORT),--metrics-port $(DEMO_METRICS_PORT))

# Two xdist workers, one test file per worker at a time: each worker runs its own chains.
TEST_WORKERS ?= 2
test: bootstrap system-deps
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# Debian packages the tests drive for real, each checked by the command it provides:
#   chromium        headless browser for tests/web/test_browser.py (Playwright never downloads one)
#   systemd         systemd-analyze for tests/ops/test_systemd_units.py (installing it starts nothing)
#   postgresql      initdb/postgres for tests/daemons/test_meter_store_pg.py (a throwaway cluster)
#   mosquitto       the MQTT broker for tests/devices/ (started per test on a free port)
# One apt-get for whatever is missing. Without root (or passwordless sudo) nothing is
# installed and the tests that need a missing package skip with the reason.
SYSTEM_DEPS := chromium:chromium systemd-analyze:systemd initdb:postgresql mosquitto:mosquitto
# $(call apt_missing,CMD:PKG ...): install the packages whose command is missing (one apt-get).
define apt_missing
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/$$cmd >/dev/null 2>&1 || \
	  ls /usr/sbin/$$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=""; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	  else echo "note: cannot install$$missing here (needs root); what needs them will skip or say so"; exit 0; fi; \
	  echo "==> installing$$missing (apt)"; $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
endef
system-deps:
	$(call apt_missing,$(SYSTEM_DEPS))

# Home Assistant for real (optional; docs/devices.md). HA needs Python 3.13 and would downgrade
# the project's pinned packages, so it gets a side venv of its own: the newest HA whose Python
# floor is 3.13.0, with its frontend (HA starts in recovery mode without it). Nothing else uses
# it; tests/devices/test_homeassistant_core.py skips without it.
HA_VENV := .ha-venv
HA_CORE := homeassistant==2025.4.4 home-assistant-frontend==20250411.0
ha-core: $(HA_VENV)/.stamp
$(HA_VENV)/.stamp:
	@py=""; for c in python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13); do \
	  if $$c -c 'import sys; assert sys.version_info >= (3, 13)' >/dev/null 2>&1; then py=$$c; break; fi; done; \
	if [ -z "$$py" ]; then echo "make ha-core needs Python 3.13 (python3.13 on PATH, or pyenv install 3.13);" \
	  "Home Assistant is optional: its test skips without it"; exit 1; fi; \
	echo "==> Home Assistant core in $(HA_VENV) ($$py; about 800 MB)"; \
	test -x $(HA_VENV)/bin/python || $$py -m venv $(HA_VENV); \
	$(HA_VENV)/bin/pip install --quiet $(HA_CORE) && touch $@
ha-test: bootstrap ha-core
	@HA_PYTHON=$(CURDIR)/$(HA_VENV)/bin/python $(PY) -m pytest -p no:cacheprovider tests/devices/test_homeassistant_core.py

# make demo drives a real MQTT broker for a winner's plug (docs/devices.md).
demo-deps:
	$(call apt_missing,mosquitto:mosquitto)

screenshots: bootstrap system-deps
	@DR_SCREENSHOT_DIR=$(CURDIR)/docs/img $(PY) -m pytest tests/web/test_browser.py -q

test-fast: bootstrap
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" -q

bench: bootstrap
	@$(PY) bench/run.py $(BENCH_ARGS)

compile: bootstrap
	@$(PY) -m demand_response compile

# Static analysis: slither in its own venv (it would put a solc wrapper on PATH), run through
# the project's own solc resolution; fails on any High/Medium finding not documented as a
# false positive in docs/security.md.
AUDIT_VENV := .venv-audit
audit: bootstrap
	@test -x $(AUDIT_VENV)/bin/slither || { echo "==> slither ($(AUDIT_VENV))"; \
	  $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install --quiet slither-analyzer==0.11.6; }
	@$(PY) tools/audit.py
	@$(MAKE) --no-print-directory fuzz

# schemathesis in its own venv (it needs a newer hypothesis than brownie's pin) against the app
# served by run_flask.sh with sign-in on: tools/schemathesis_run.py. ~1 minute; FUZZ_EXAMPLES
# (default 25 per operation and token) for longer runs; reports in build/fuzz/.
FUZZ_VENV := .venv-fuzz
SCHEMATHESIS_VERSION := 4.32.5
fuzz: bootstrap
	@test -x $(FUZZ_VENV)/bin/schemathesis && $(FUZZ_VENV)/bin/schemathesis --version | grep -q " $(SCHEMATHESIS_VERSION)$$" || \
	  { echo "==> schemathesis $(SCHEMATHESIS_VERSION) ($(FUZZ_VENV))"; rm -rf $(FUZZ_VENV); \
	  $(PYTHON) -m venv $(FUZZ_VENV) && $(FUZZ_VENV)/bin/pip install --quiet schemathesis==$(SCHEMATHESIS_VERSION); }
	@FUZZ_VENV=$(FUZZ_VENV) $(PY) tools/schemathesis_run.py

# The consumer on an arm64 Debian userland under qemu-user (root; ~7 min, ~10 min the first time).
iot-check: bootstrap
	@bash tools/iot/check.sh

lock:
	@rm -rf /tmp/dr-lockenv && $(PYTHON) -m venv /tmp/dr-lockenv
	@/tmp/dr-lockenv/bin/pip install --quiet ".[dev,grid,web,ops,mv,devices,openadr]"
	@{ echo "# Exact versions for the dev/test environment: \`pip install -r requirements.lock -e .[dev,grid,web,ops,mv,devices,openadr]\`."; \
	   echo "# Satisfies eth-brownie 1.22.2 (web3 7.16.0, pytest 9.1.1, hypothesis 6.27.3, python-dotenv 0.16.0)."; \
	   echo "# Regenerate: make lock"; \
	   /tmp/dr-lockenv/bin/pip freeze --exclude demand-response; } > requirements.lock
	@echo "requirements.lock updated"

clean:
	rm -rf $(VENV) node_modules .solcx .pytest_cache .hypothesis
