-- A running change asked to stop (api-changes.md §4): its saga looks at each step
-- boundary before its point of no return.
ALTER TABLE order_changes
    ADD COLUMN cancel_asked_at TIMESTAMPTZ,
    ADD COLUMN cancel_reason TEXT;

-- What changes left owed, summed at each metrics scrape: only the few orders that
-- owe something are indexed.
CREATE INDEX orders_outstanding_idx ON orders (currency)
    WHERE (document->>'outstanding_amount')::numeric > 0;
