-- A message the receiving service refused for good stays in the outbox. An
-- operator either sends it again (retry) or drops it with a reason (resolve):
-- dropped, it is kept for the record but no longer undelivered.
ALTER TABLE outbox ADD COLUMN dropped_at TIMESTAMPTZ, ADD COLUMN dropped_reason TEXT;
