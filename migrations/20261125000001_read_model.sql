-- Read model of the order service. Written only by the sagas (from journaled steps,
-- guarded by the order version so that a replayed write is a no-op); read by the API.

CREATE TABLE orders (
    id               UUID PRIMARY KEY,
    order_number     TEXT NOT NULL UNIQUE,
    customer_id      UUID,
    status           TEXT NOT NULL,
    payment_status   TEXT NOT NULL,
    currency         CHAR(3) NOT NULL,
    subtotal         NUMERIC(19,4) NOT NULL,
    discount_amount  NUMERIC(19,4) NOT NULL,
    tax_amount       NUMERIC(19,4) NOT NULL,
    shipping_amount  NUMERIC(19,4) NOT NULL,
    total_amount     NUMERIC(19,4) NOT NULL,
    captured_amount  NUMERIC(19,4) NOT NULL,
    refunded_amount  NUMERIC(19,4) NOT NULL,
    shipping_address JSONB NOT NULL,
    billing_address  JSONB NOT NULL,
    notes            TEXT,
    metadata         JSONB NOT NULL,
    failure_code     TEXT,
    failure_message  TEXT,
    reservation_id   TEXT,
    payment_id       TEXT,
    fulfillment_id   TEXT,
    version          BIGINT NOT NULL,
    -- The API resource at this version, so that a read returns exactly what the
    -- saga committed.
    document         JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ,
    cancelled_at     TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ
);

-- Listing is newest first with (created_at, id) as the cursor.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id           UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    id                 INTEGER NOT NULL,
    product_id         UUID NOT NULL,
    product_sku        TEXT NOT NULL,
    product_name       TEXT NOT NULL,
    warehouse_id       UUID NOT NULL,
    quantity           BIGINT NOT NULL CHECK (quantity > 0),
    unit_price         NUMERIC(19,4) NOT NULL,
    discount_amount    NUMERIC(19,4) NOT NULL,
    tax_amount         NUMERIC(19,4) NOT NULL,
    total_price        NUMERIC(19,4) NOT NULL,
    cancelled_quantity BIGINT NOT NULL DEFAULT 0,
    returned_quantity  BIGINT NOT NULL DEFAULT 0,
    refunded_quantity  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, id)
);
CREATE INDEX order_items_product_idx ON order_items (product_id);
CREATE INDEX order_items_sku_idx ON order_items (product_sku);

-- One status change per order version.
CREATE TABLE order_status_history (
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT,
    actor       TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, version)
);

CREATE TABLE order_edit_history (
    order_id  UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    version   BIGINT NOT NULL,
    seq       INTEGER NOT NULL,
    field     TEXT NOT NULL,
    old_value JSONB,
    new_value JSONB,
    reason    TEXT,
    at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, version, seq)
);

CREATE TABLE payments (
    order_id     UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    payment_id   TEXT,
    method       TEXT NOT NULL,
    amount       NUMERIC(19,4) NOT NULL,
    status       TEXT NOT NULL,
    failure_code TEXT,
    at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, attempt)
);
CREATE INDEX payments_payment_id_idx ON payments (payment_id);

CREATE TABLE refunds (
    order_id   UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    refund_key TEXT NOT NULL,
    refund_id  TEXT,
    payment_id TEXT NOT NULL,
    amount     NUMERIC(19,4) NOT NULL,
    reason     TEXT,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, refund_key)
);

CREATE TABLE returns (
    id           UUID PRIMARY KEY,
    order_id     UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status       TEXT NOT NULL,
    items        JSONB NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ,
    refunded_at  TIMESTAMPTZ,
    version      BIGINT NOT NULL
);
CREATE INDEX returns_order_idx ON returns (order_id);

-- Each saga step of each order: what the operator timeline shows. A saga run is
-- named (`create_order`, `pay_order#2`, ...) and its steps numbered in order.
CREATE TABLE saga_steps (
    order_id    UUID NOT NULL,
    saga        TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    step        TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    last_error  TEXT,
    compensates TEXT,
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ,
    PRIMARY KEY (order_id, saga, seq)
);
CREATE INDEX saga_steps_outcome_idx ON saga_steps (outcome, started_at);

-- Every event the order emitted, keyed by its stable CloudEvents id.
CREATE TABLE order_events (
    event_id   UUID PRIMARY KEY,
    order_id   UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    topic      TEXT NOT NULL,
    payload    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX order_events_order_idx ON order_events (order_id, version);

-- Idempotency-Key of mutating API calls: the request's hash and, once it rested,
-- the response to give again.
CREATE TABLE idempotency_keys (
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    order_id        UUID NOT NULL,
    response_status INTEGER,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Per-day counter behind ORD-YYYYMMDD-NNNNNN.
CREATE TABLE order_number_counters (
    day        DATE PRIMARY KEY,
    last_value BIGINT NOT NULL
);
