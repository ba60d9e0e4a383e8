# Two commands set up and run everything on a fresh machine:
#   make demo   – the whole platform on the embedded stack (synthetic cameras, API, dashboard)
#   make test   – unit + integration tiers (real broker, S3, SQL, Ray on loopback)
# Both create or refresh .venv themselves.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-integration venv browser mosquitto clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser tests (evidence clips, dashboard); needs root + apt.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and cannot install it here: browser tests will skip"; fi; }

# Debian's Mosquitto for the MQTT notification tests (a real broker on loopback); root + apt.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	  else echo "mosquitto not installed and cannot install it here: MQTT tests will skip"; fi; }

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/vigil demo $(DEMO_ARGS)

test: $(STAMP) browser mosquitto
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -q -m "not slow" $(PYTEST_ARGS)

test-unit: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -q -m "not slow and not integration" $(PYTEST_ARGS)

test-integration: $(STAMP) browser mosquitto
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -q -m "integration and not slow" $(PYTEST_ARGS)

clean:
	rm -rf .vigil build *.egg-info
