-- Operators: which Restate invocation ran each saga step, and why an order waits
-- for an operator (its `attention`), as columns the stuck list can filter on.
ALTER TABLE saga_steps ADD COLUMN invocation_id TEXT;
CREATE INDEX saga_steps_invocation_idx ON saga_steps (invocation_id);

ALTER TABLE orders
    ADD COLUMN attention_step    TEXT,
    ADD COLUMN attention_code    TEXT,
    ADD COLUMN attention_message TEXT,
    ADD COLUMN attention_since   TIMESTAMPTZ;
CREATE INDEX orders_attention_idx ON orders (attention_since) WHERE attention_since IS NOT NULL;
CREATE INDEX orders_draft_expiry_idx ON orders (expires_at) WHERE status = 'draft';
