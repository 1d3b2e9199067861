-- Who took each lease and opened each batch: only they may act on it with
-- its token (which every reader can see). Rows from before have none.
ALTER TABLE leases ADD COLUMN principal TEXT;
ALTER TABLE stream_batches ADD COLUMN principal TEXT;
