-- A running change asked to stop (api-changes.md §4): its saga looks at each step
-- boundary before its point of no return.
ALTER TABLE order_changes
    ADD COLUMN cancel_asked_at TIMESTAMPTZ,
    ADD COLUMN cancel_reason TEXT;
