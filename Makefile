# Globalnet: every target is idempotent and says what it does.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
GNCTL := $(VENV)/bin/gnctl
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: help setup deps venv k8s images bcc-headers demo demo-down test test-unit test-bpf lint \
	bench-lab bench-globalnet bench-dns bench-nat bench-e2e clean

# bench-nat: which of our datapaths to measure (nftables, ebpf or both).
DATAPATH ?= nftables

help:
	@echo "make demo       set everything up, bring up a 2-cluster lab and show it"
	@echo "make test       set everything up and run all test tiers"
	@echo "make demo-down  take the demo lab down"
	@echo "make images     build the lab's container images offline (cached by content)"
	@echo "make bench-lab  time 'lab up' for 2 and 3 clusters"
	@echo "make bench-globalnet  IPAM and controller reconcile figures"
	@echo "make bench-dns  our clusterset.local server against NSD, with dnsperf"
	@echo "make bench-e2e  export to allocated/programmed/resolvable/reachable in a Globalnet lab,"
	@echo "                then gateway failover gaps per cable driver (ARGS=\"--drivers vxlan\")"
	@echo "make bench-nat  connection rate and update latency: our maps vs rule-per-IP chains"
	@echo "                (DATAPATH=nftables|ebpf|both)"
	@echo "make test-bpf   the eBPF programs on hand-built packets (BPF_PROG_TEST_RUN) and the"
	@echo "                eBPF backend's life cycle, in a throwaway network namespace"

deps:
	@bash scripts/install-deps.sh

$(STAMP): pyproject.toml
	@echo "[venv] creating $(VENV) from /usr/bin/python3 with system site packages (python3-nftables, bcc)"
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@echo "[venv] installing globalnet with test extras"
	@$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: deps $(STAMP)

k8s: deps
	@bash scripts/build-k8s.sh

# The lab's container images (pause, globalnet, test), built offline and cached by
# content; the globalnet image carries the project's wheel, hence the venv.
images: deps venv
	@bash deploy/images/build.sh

bcc-headers: deps
	@bash scripts/bcc-headers.sh

setup: deps venv k8s bcc-headers images

demo: setup
	@bash scripts/demo.sh

demo-down:
	@$(GNCTL) lab down --name demo

test: setup
	@bash scripts/run-tests.sh tests

test-unit: venv
	@$(PY) -m pytest tests/unit

# The eBPF datapath's own tests: programs through BPF_PROG_TEST_RUN, struct layouts
# checked by clang, and the backend on a real device (bcc needs the header links).
test-bpf: venv bcc-headers
	@unshare --net --fork -- bash -c 'ip link set lo up && exec $(PY) -m pytest "$$@"' x \
		tests/unit/test_ebpf_structs.py tests/netns/test_bpf_progs.py \
		tests/netns/test_bpf_layout.py tests/netns/test_ebpf_backend.py -q

lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports --no-cache

bench-lab: setup
	@unshare --net --fork -- bash -c 'ip link set lo up && exec $(PY) -m bench.lab_up'

bench-nat: setup
	@unshare --net --fork -- bash -c 'ip link set lo up && exec $(PY) -m bench.nat --datapath $(DATAPATH)'

bench-e2e: setup
	@unshare --net --fork -- bash -c 'ip link set lo up && exec $(PY) -m bench.e2e $(ARGS)'

bench-dns: setup
	@unshare --net --fork -- bash -c 'ip link set lo up && exec $(PY) -m bench.dns'

bench-globalnet: setup
	@unshare --net --fork -- bash -c 'ip link set lo up && exec $(PY) -m bench.globalnet'

clean:
	rm -rf $(VENV) *.egg-info
