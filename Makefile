# One release profile and one build for everything: every target below builds the
# whole workspace the same way (same features, so nothing is built twice) and runs
# its binary from the target folder; the tests start the binaries `make run` uses.
CARGO ?= cargo
BUILD = $(CARGO) build --release --workspace --all-targets
BIN = $${CARGO_TARGET_DIR:-target}/release

PYTHON ?= python3

.PHONY: setup run cluster test api-check bench bench-analytics chaos lint fmt

# `make chaos`: a seeded run; CI runs a short one (see .ci/run). CLUSTER=1 runs it
# on three Restate nodes and two service replicas.
SEED ?= 1
ORDERS ?= 400
MINUTES ?= 10
CLUSTER ?=

## Install what is missing from the system (Debian/Ubuntu: Node.js, PostgreSQL's
## server binaries, Python's venv, Chromium and its driver; elsewhere it prints the
## command), the pinned restate-server (npm, with its lockfile), schemathesis (PyPI,
## pinned, into .venv), and build the workspace once: what `make run`, `make test`,
## `make chaos` and `make bench` run.
setup:
	scripts/system-packages
	npm ci --no-audit --no-fund
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
	$(BUILD)

## The embedded default (`order-stack dev`): private PostgreSQL, restate-server,
## simulator, and the service in the same process.
run:
	$(BUILD)
	$(BIN)/order-stack dev

## The same with a 3-node Restate cluster and two service replicas behind it
## (`order-stack cluster`).
cluster:
	$(BUILD)
	$(BIN)/order-stack cluster

## Every test, on the PostgreSQL at TEST_DATABASE_URL, else the local one on 5432,
## else a private one made for the run (scripts/with-postgres). The end-to-end tests
## stand on crates/stack; those of `dev` and `cluster` run the `order-stack` binary
## that this builds beside the service's. Four tests at a time by default
## (RUST_TEST_THREADS): an end-to-end test mostly waits on its processes.
test:
	RUST_TEST_THREADS=$${RUST_TEST_THREADS:-4} scripts/with-postgres $(CARGO) test --release --workspace

## The running service against its OpenAPI document, with schemathesis (see docs/guide.md).
api-check:
	$(CARGO) test --release --test api schemathesis

## Load figures for every flow beside the engine floor and the no-journal reference,
## with the CPU per request of each process, memory, and the list figure at a
## million orders; CLUSTER=1 runs it on three Restate nodes and two replicas. Needs
## a PostgreSQL at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
bench:
	$(BUILD)
	$(BIN)/order-bench $(if $(CLUSTER),--cluster)

## GET /orders/analytics over a million orders, in a database of its own made on the
## PostgreSQL server at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
bench-analytics:
	$(BUILD)
	$(BIN)/order-bench analytics

## Every flow under downstream faults while the service and restate-server are
## killed and restarted, then every invariant checked order by order; non-zero on
## any violation. On the PostgreSQL at CHAOS_DATABASE_URL or TEST_DATABASE_URL, else
## the local one on 5432, else a private one made for the run.
chaos:
	$(BUILD)
	scripts/with-postgres $(BIN)/order-chaos --seed $(SEED) --orders $(ORDERS) --minutes $(MINUTES) $(if $(CLUSTER),--cluster)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
