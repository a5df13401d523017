# syntax=docker/dockerfile:1

# Build: the release binary. The cache mounts keep the crate registry and the target
# folder between builds (BuildKit).
FROM rust:1.90-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/order-service /usr/local/bin/order-service

# Run: the binary alone. `serve` needs PostgreSQL, Restate and the downstream
# services from its environment (see compose.yaml and the README).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin order
COPY --from=builder /usr/local/bin/order-service /usr/local/bin/order-service
USER order
# REST API, Restate endpoint.
EXPOSE 8004 9080
ENTRYPOINT ["order-service"]
CMD ["serve"]
