-- The edit history names who made each change and, for a field of an item or of a
-- return, which one.
ALTER TABLE order_edit_history
    ADD COLUMN actor   TEXT NOT NULL DEFAULT 'system',
    ADD COLUMN item_id INTEGER,
    ADD COLUMN return_id UUID;

-- A return as the API shows it, beside the columns that queries filter on.
ALTER TABLE returns
    ADD COLUMN document   JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN closed_at  TIMESTAMPTZ,
    ADD COLUMN expires_at TIMESTAMPTZ;
CREATE INDEX returns_open_idx ON returns (expires_at) WHERE closed_at IS NULL;
