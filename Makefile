# Two commands for a newcomer (see README.md):
#   make demo   installs everything (system packages too) and runs mos on the shipped capture
#   make test   runs the whole test suite (installing first when needed)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PKGS := tshark tcpflow tcpdump iproute2 ethtool curl iputils-ping apache2-utils wrk lighttpd dpdk dpdk-dev libdpdk-dev pkg-config libhyperscan-dev libhtp-dev
# only the forwarding benchmark uses these
BENCH_PKGS := apache2-utils lighttpd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SOURCES := $(wildcard native/*.[ch] mos/*.pyx mos/*.pxd mos/*/*.[ch] mos/*/*.pyx mos/*/*.pxd mos/*/*.pxi middleboxes/*/*.pyx)

.PHONY: demo test setup system-deps build bench lint format clean

demo: setup
	$(BIN)/mos demo
	@echo; echo "# mos ids -r mos/data/sample.pcap -S middleboxes/ids/demo.rules -l build/demo-ids"
	$(BIN)/mos ids -r mos/data/sample.pcap -S middleboxes/ids/demo.rules -l build/demo-ids --no-progress
	@cat build/demo-ids/fast.log

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

setup: $(VENV)/.installed build

$(VENV)/.installed: pyproject.toml setup.py
	$(MAKE) system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q 'setuptools>=65' wheel 'Cython>=3.0'
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# compile the per-packet core in place (fast when nothing changed)
build: $(VENV)/.installed
	$(BIN)/python setup.py -q build_ext --inplace
	@$(BIN)/python -c "import mos.dualstack._engine, mos._native, mos.tcp._stream, mos.tcp._tcp, mos.runtime._loop, mos.consumers._literal, middleboxes.ids._prefilter, mos.app._http, mos.app._tls"

system-deps:
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing system packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "no apt-get: install $(APT_PKGS) yourself (optional: used by tests and bench)"; fi

bench: setup
	$(MAKE) system-deps APT_PKGS="$(BENCH_PKGS)"
	$(BIN)/python bench/bench_monitor.py
	$(BIN)/python bench/bench_inline.py

lint:
	$(BIN)/python -m ruff check mos tests bench middleboxes

format:
	$(BIN)/python -m ruff format mos tests bench middleboxes

include fuzz/fuzz.mk

clean:
	rm -rf build $(VENV) mos/*.so mos/*/*.so mos/_native.c mos/dualstack/_engine.c mos/tcp/_stream.c mos/tcp/_tcp.c mos/runtime/_loop.c
