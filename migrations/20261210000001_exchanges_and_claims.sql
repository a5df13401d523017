-- Exchanges and claims as the API shows them, beside the columns queries filter
-- on; written with the order version that last changed each.
CREATE TABLE exchanges (
    id          UUID PRIMARY KEY,
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    opened_at   TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    version     BIGINT NOT NULL,
    document    JSONB NOT NULL
);
CREATE INDEX exchanges_order_idx ON exchanges (order_id);

CREATE TABLE claims (
    id          UUID PRIMARY KEY,
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    opened_at   TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    version     BIGINT NOT NULL,
    document    JSONB NOT NULL
);
CREATE INDEX claims_order_idx ON claims (order_id);
