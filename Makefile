# The two set-up commands (see README.md): `make demo` runs the main job, `make test` the tests.
# Both create .venv and install what they need on first use.

VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/demo

.PHONY: install mosquitto chromium demo test test-fast lint bench bench-fleet

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: pip takes the CPU build from this machine's disk, never CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,sim]'
	touch $@

# anvil, the real EVM node the chain tests run against, from npm (@foundry-rs/anvil).
node_modules/.bin/anvil: package.json
	npm install --no-audit --no-fund
	touch $@

# mosquitto, the MQTT broker of the telemetry tests and `sim --processes` (Debian's package).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
mosquitto:
	@if ! command -v mosquitto_sub >/dev/null || ! test -x /usr/sbin/mosquitto; then \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients; }; \
	fi

# chromium, the headless browser that opens a run's report in the tests (Debian's package).
chromium:
	@if ! command -v chromium >/dev/null; then \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	fi

install: $(VENV)/.installed

# The fleet: 8 vehicles, each with its own libp2p host on 127.0.0.1 and an account on an
# embedded chain, learn together for 20 rounds; then the merged model is exported to fp32 and
# int8 ONNX and classifies a night drive.
demo: install node_modules/.bin/anvil mosquitto
	$(VENV)/bin/swarmdrive sim --out $(OUT)
	$(VENV)/bin/swarmdrive render --town Town10 --weather ClearNight -n 40 --seed 5 --force --out $(OUT)/frames
	$(VENV)/bin/swarmdrive export $(OUT)/model.pt --out $(OUT)/model.onnx
	$(VENV)/bin/swarmdrive export $(OUT)/model.pt --int8 --calibration $(OUT)/frames --out $(OUT)/model.int8.onnx
	$(VENV)/bin/swarmdrive infer --model $(OUT)/model.int8.onnx $(OUT)/frames > $(OUT)/detections.jsonl
	# The same fleet as it runs on the road: a serve and a learn process per vehicle, anvil as
	# the chain, mosquitto receiving each vehicle's telemetry (printed at the end).
	$(VENV)/bin/swarmdrive sim --processes --vehicles 4 --rounds 5 --local-steps 10 --round-timeout 30 --out $(OUT)/processes
	@echo "demo: wrote $(OUT)/ (result.json, model.pt, model.onnx, model.int8.onnx, detections.jsonl, processes/)"

lint: install
	$(VENV)/bin/ruff check agent models chain sim tests benchmarks
	$(VENV)/bin/mypy agent models chain sim

test: install lint node_modules/.bin/anvil mosquitto chromium
	$(PY) -m pytest -q

# The quick local loop: everything but the tests marked slow (CI runs them all: `make test`).
test-fast: install node_modules/.bin/anvil mosquitto
	$(PY) -m pytest -q -m "not slow"

bench: install node_modules/.bin/anvil
	for b in startup render codec generalisation inference learning frontier byzantine chain_gas round; do echo "== $$b"; $(PY) -m benchmarks.$$b || exit 1; done

# The fleet benchmarks: fleets of processes (anvil, mosquitto), and Flower side by side. Each
# takes 10 to 30 minutes here.
bench-fleet: install node_modules/.bin/anvil mosquitto
	$(PY) -m pip install -q -e '.[flower]'
	for b in ota overlap scale flower; do echo "== $$b"; $(PY) -m benchmarks.$$b || exit 1; done
