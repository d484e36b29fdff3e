# berth: the two README commands are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
BERTH_TEST_ENGINES ?= podman,docker
export BERTH_TEST_ENGINES

.PHONY: help setup images build demo test lint bench bench-api api-fuzz

help:
	@echo "make setup   install packages, start dockerd + local registry (scripts/setup.sh)"
	@echo "make images  build localhost/berth-demo:latest for podman and docker"
	@echo "make build   cargo build --release of every binary"
	@echo "make demo    setup + build + image + 'berth --engine podman up examples/demo/berth.toml'"
	@echo "make test    setup + images + the whole test suite (BERTH_TEST_ENGINES=$(BERTH_TEST_ENGINES))"
	@echo "             (keeps the vet/verify HTML+JSON reports in target/test-artifacts/)"
	@echo "make lint    rustfmt check + clippy -D warnings"
	@echo "make bench   cargo run --release -p xtask -- bench"
	@echo "make api-fuzz   schemathesis against the daemon's own OpenAPI document + a JSON-RPC fuzz (scripts/api-fuzz.sh)"
	@echo "make bench-api  the HTTP API benchmark (GET /api/state with 50 apps under wrk, SSE fan-out to 100 clients)"
	@echo "make fuzz    every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each (60; nightly), results in fuzz/RESULTS.md"

setup:
	bash scripts/setup.sh

images:
	bash scripts/build-images.sh all

build:
	$(CARGO) build --release --workspace --bins

# Sequential on purpose (also under make -j): the image needs the packages.
demo:
	bash scripts/setup.sh
	$(CARGO) build --release --workspace --bins
	bash scripts/build-images.sh podman
	./target/release/berth --engine podman up examples/demo/berth.toml
	@# What runs, and what its gate holds (bitcoind syncs for about a minute).
	./target/release/berth --engine podman status || true
	./target/release/berth --engine podman gate status

# crates/berth/tests/verify.rs writes its vet and verify reports
# (report.html, report.json, artifacts/) to target/test-artifacts/<name>/,
# which CI keeps.
test:
	bash scripts/setup.sh
	bash scripts/build-images.sh all
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) run --release -p xtask -- bench

bench-api:
	$(CARGO) run --release -p xtask -- bench-api

# Coverage-guided fuzzing (fuzz/, cargo-fuzz on the nightly toolchain):
# every target for FUZZ_SECONDS, one at a time; FUZZ_TARGETS picks some.
# Not part of `make test`: it needs nightly and runs for minutes.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
.PHONY: fuzz
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh $(FUZZ_TARGETS)

# Property-based fuzzing of the HTTP API and JSON-RPC on loopback
# (schemathesis and hypothesis in a venv under target/api-fuzz/).
api-fuzz:
	bash scripts/api-fuzz.sh
