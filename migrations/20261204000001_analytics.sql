-- Analytics (`GET /orders/analytics`): how many orders were created in a window, by
-- their status now, and per currency what the placed ones were worth. Counting the
-- orders at each request is too slow (a million of them over 90 days: 200-300 ms
-- even from a covering index), so they are also counted per UTC day of creation in
-- `order_daily_stats`, kept by triggers in the transaction that writes the order.
-- A window reads its whole days there, and its partial first and last days from
-- `orders` through a covering index.

-- Each (day, status, currency) is split into 8 slots by order id: all of today's
-- new orders land on the same day and status, and one row for them would make
-- concurrent sagas wait for each other's commit.
CREATE TABLE order_daily_stats (
    day            DATE NOT NULL,
    status         TEXT NOT NULL,
    currency       CHAR(3) NOT NULL,
    slot           SMALLINT NOT NULL,
    orders         BIGINT NOT NULL,
    -- Orders ever captured (`captured_amount > 0`) and their `total_amount`; what
    -- was refunded (only a captured order has refunds).
    placed         BIGINT NOT NULL,
    placed_total   NUMERIC NOT NULL,
    refunded_total NUMERIC NOT NULL,
    PRIMARY KEY (day, status, currency, slot)
);

-- The partial days of a window, read without visiting the table.
CREATE INDEX orders_analytics_idx ON orders (created_at)
    INCLUDE (status, currency, total_amount, captured_amount, refunded_amount);

-- What one version of an order adds to the counts (`sign` 1) or takes away (-1).
-- One ROW expression, so that PostgreSQL inlines it where it is called.
CREATE FUNCTION order_daily_stats_of(o orders, sign INTEGER) RETURNS order_daily_stats
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW((o.created_at AT TIME ZONE 'UTC')::date, o.status, o.currency,
               (get_byte(uuid_send(o.id), 15) % 8)::smallint,
               sign::bigint,
               CASE WHEN o.captured_amount > 0 THEN sign ELSE 0 END::bigint,
               CASE WHEN o.captured_amount > 0 THEN sign * o.total_amount ELSE 0 END,
               sign * o.refunded_amount)::order_daily_stats
$$;

-- Moves a written order from the counts of its old version to those of its new
-- one. It locks at most two rows, in key order: two sagas, each writing its own
-- order, never deadlock here.
CREATE FUNCTION order_daily_stats_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_daily_stats AS s
    SELECT d.day, d.status, d.currency, d.slot, sum(d.orders), sum(d.placed),
           sum(d.placed_total), sum(d.refunded_total)
    FROM (SELECT (order_daily_stats_of(NEW, 1)).* WHERE TG_OP <> 'DELETE'
          UNION ALL
          SELECT (order_daily_stats_of(OLD, -1)).* WHERE TG_OP <> 'INSERT') AS d
    GROUP BY d.day, d.status, d.currency, d.slot
    HAVING sum(d.orders) <> 0 OR sum(d.placed) <> 0 OR sum(d.placed_total) <> 0
        OR sum(d.refunded_total) <> 0
    ORDER BY d.day, d.status, d.currency, d.slot
    ON CONFLICT (day, status, currency, slot) DO UPDATE SET
        orders = s.orders + EXCLUDED.orders,
        placed = s.placed + EXCLUDED.placed,
        placed_total = s.placed_total + EXCLUDED.placed_total,
        refunded_total = s.refunded_total + EXCLUDED.refunded_total;
    RETURN NULL;
END
$$;

-- Counts every order again from the table; for rows written with the triggers
-- off, as a bulk load may be.
CREATE FUNCTION order_daily_stats_rebuild() RETURNS void LANGUAGE sql AS $$
    LOCK TABLE orders IN SHARE MODE;
    DELETE FROM order_daily_stats;
    INSERT INTO order_daily_stats
    SELECT d.day, d.status, d.currency, d.slot, sum(d.orders), sum(d.placed),
           sum(d.placed_total), sum(d.refunded_total)
    FROM (SELECT (order_daily_stats_of(o, 1)).* FROM orders AS o) AS d
    GROUP BY d.day, d.status, d.currency, d.slot;
$$;

CREATE FUNCTION order_daily_stats_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM order_daily_stats;
    RETURN NULL;
END
$$;

-- Most writes of an order change none of the counted columns: they call nothing.
CREATE TRIGGER order_daily_stats_update AFTER UPDATE ON orders FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.currency IS DISTINCT FROM NEW.currency
          OR OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.id IS DISTINCT FROM NEW.id
          OR OLD.total_amount IS DISTINCT FROM NEW.total_amount
          OR OLD.captured_amount IS DISTINCT FROM NEW.captured_amount
          OR OLD.refunded_amount IS DISTINCT FROM NEW.refunded_amount)
    EXECUTE FUNCTION order_daily_stats_track();
CREATE TRIGGER order_daily_stats_insert_delete AFTER INSERT OR DELETE ON orders
    FOR EACH ROW EXECUTE FUNCTION order_daily_stats_track();
CREATE TRIGGER order_daily_stats_truncate AFTER TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_daily_stats_clear();

-- The orders already there (the triggers above hold writes off until this commits).
SELECT order_daily_stats_rebuild();
