# syntax=docker/dockerfile:1

# Build: the service's release binary alone (`order-service`): no simulator, no
# fault hook and no code that starts PostgreSQL or restate-server (those are the
# `order-stack` crate's) in the production image. The cache mounts keep the crate registry and the target folder
# between builds (BuildKit).
FROM rust:1.90-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p order-service \
    && cp target/release/order-service /usr/local/bin/order-service

# The simulator for compose.yaml (`docker build --target simulator`): the
# `order-stack` binary, run as `order-stack sim`. Never the production image.
FROM rust:1.90-bookworm AS simulator-builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p order-stack \
    && cp target/release/order-stack /usr/local/bin/order-stack

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin order \
    && mkdir /secrets && chown order /secrets

FROM runtime AS simulator
COPY --from=simulator-builder /usr/local/bin/order-stack /usr/local/bin/order-stack
USER order
EXPOSE 9010
ENTRYPOINT ["order-stack"]
CMD ["sim"]

# Run (the default target, last): the binary alone. `serve` needs PostgreSQL, Restate
# and the downstream services from its environment (see compose.yaml and docs/operations.md).
FROM runtime
COPY --from=builder /usr/local/bin/order-service /usr/local/bin/order-service
USER order
# REST API, gRPC, Restate endpoint.
EXPOSE 8004 9004 9080
ENTRYPOINT ["order-service"]
CMD ["serve"]
