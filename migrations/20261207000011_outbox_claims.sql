-- The relay claims an order's queue by locking its oldest undelivered message, and
-- a queue that fails waits as a whole (its messages' next_attempt_at moves with its
-- oldest's backoff). So the relay looks only at what is due, by time...
DROP INDEX outbox_pending_idx;
CREATE INDEX outbox_due_idx ON outbox (kind, next_attempt_at)
    WHERE sent_at IS NULL AND refused_at IS NULL;
-- ...finds each order's oldest undelivered message, and counts what waits (the
-- gauges of /metrics, the stuck list) without reading the delivered log.
CREATE INDEX outbox_undelivered_idx ON outbox (order_id, kind, id)
    WHERE sent_at IS NULL;
-- Since when delivery of a message fails (cleared once it is delivered): the stuck
-- list shows a message that has been failing longer than a short while.
ALTER TABLE outbox ADD COLUMN failing_since TIMESTAMPTZ;
