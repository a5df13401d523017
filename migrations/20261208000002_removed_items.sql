-- A change can remove every unit of an item that had none given back: the item
-- stays, with quantity 0 (api-changes.md, "Money of a change" 2).
ALTER TABLE order_items DROP CONSTRAINT order_items_quantity_check;
ALTER TABLE order_items ADD CONSTRAINT order_items_quantity_check CHECK (quantity >= 0);
