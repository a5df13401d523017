-- Events and customer notifications are written in the same transaction as the
-- order change they tell about, then delivered by a relay (src/relay.rs): a slow or
-- failing bus or notification service never holds an order. Delivered rows stay as
-- the order's message log.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    -- The CloudEvents id of an event, the Idempotency-Key of a notification.
    message_id      TEXT NOT NULL UNIQUE,
    order_id        UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('event', 'notification')),
    -- The topic of an event, the template of a notification.
    name            TEXT NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    sent_at         TIMESTAMPTZ,
    -- A final refusal by the receiving service: kept for operators, not retried.
    refused_at      TIMESTAMPTZ
);
-- What the relay has left to deliver, oldest first per kind.
CREATE INDEX outbox_pending_idx ON outbox (kind, id)
    WHERE sent_at IS NULL AND refused_at IS NULL;
CREATE INDEX outbox_order_idx ON outbox (order_id, id);

INSERT INTO outbox (message_id, order_id, version, kind, name, payload, created_at, sent_at)
SELECT event_id::text, order_id, version, 'event', topic,
       jsonb_build_object('id', event_id, 'topic', topic, 'order_id', order_id,
                          'version', version, 'at', created_at, 'data', payload),
       created_at, created_at
FROM order_events;
DROP TABLE order_events;
