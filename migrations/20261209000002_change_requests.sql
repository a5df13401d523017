-- Change requests of an order (api-changes.md §5), beside its quotes and changes:
-- each row carries its own revision and only moves forward.
CREATE TABLE change_requests (
    request_id UUID PRIMARY KEY,
    order_id   UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    rev        BIGINT NOT NULL,
    document   JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX change_requests_order_idx ON change_requests (order_id, created_at);
