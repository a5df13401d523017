-- The edit history names who made each change and, for an item's field, the item.
ALTER TABLE order_edit_history
    ADD COLUMN actor   TEXT NOT NULL DEFAULT 'system',
    ADD COLUMN item_id INTEGER;
