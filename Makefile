# One release profile for everything: the tests start the same binary `make run` uses.
CARGO ?= cargo

.PHONY: setup run cluster test bench bench-analytics lint fmt

## Install the pinned restate-server (npm, with its lockfile) and build every crate
## of the workspace once (service, simulator, bench, tests).
setup:
	npm ci --no-audit --no-fund
	$(CARGO) build --release --workspace --all-targets

## The embedded default: private PostgreSQL, restate-server, simulator, service.
run:
	$(CARGO) run --release -- dev

## The same with a 3-node Restate cluster and two service replicas behind it.
cluster:
	$(CARGO) run --release -- cluster

## Every test; needs a PostgreSQL at TEST_DATABASE_URL (see README).
test:
	$(CARGO) test --release --workspace

## Load figures for create-order and get-order beside the two references.
bench:
	$(CARGO) run --release -p order-bench

## GET /orders/analytics over a million orders, in a database of its own made on the
## PostgreSQL server at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
bench-analytics:
	$(CARGO) run --release -p order-bench -- analytics

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
