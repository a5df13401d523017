-- Change quotes and changes of an order (api-changes.md §1, §2). They live apart
-- from the order's version: each row carries its own revision and only moves
-- forward. `document` is the resource as the API shows it.
CREATE TABLE change_quotes (
    quote_id   UUID PRIMARY KEY,
    order_id   UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    rev        BIGINT NOT NULL,
    document   JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX change_quotes_order_idx ON change_quotes (order_id, created_at);

CREATE TABLE order_changes (
    change_id  UUID PRIMARY KEY,
    order_id   UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    rev        BIGINT NOT NULL,
    document   JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX order_changes_order_idx ON order_changes (order_id, created_at);
CREATE INDEX order_changes_status_idx ON order_changes (status) WHERE status IN ('applying', 'awaiting_payment', 'needs_attention');
