-- Marking a message sent writes a new version of its row. Kept in the row, the
-- payload (an order document, about 2 KB) was copied into the log with each such
-- write; stored out of line, the new version points at the same payload and the
-- write logs about 200 bytes. Applies to the rows written from now on.
ALTER TABLE outbox SET (toast_tuple_target = 128);
ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTERNAL;
