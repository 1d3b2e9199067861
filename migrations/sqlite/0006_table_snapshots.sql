-- The table snapshot log: each registered table's Iceberg snapshots as
-- sluice last read them from the table's catalog. Snapshots that leave the
-- metadata (expired) stay, marked, so that lag can still walk the chain and
-- a hydration that applied one can be told it is stale.
CREATE TABLE table_snapshots (
    table_name TEXT NOT NULL REFERENCES sluice_tables (name),
    snapshot_id BIGINT NOT NULL,
    parent_id BIGINT,
    sequence_number BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    operation TEXT NOT NULL,
    -- The rest of the snapshot summary, a JSON object of strings.
    summary TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    expired_at BIGINT,
    PRIMARY KEY (table_name, snapshot_id)
);

CREATE INDEX table_snapshots_sequence ON table_snapshots (table_name, sequence_number, snapshot_id);

-- What the last refresh of each table read, or why it failed.
CREATE TABLE table_catalog_state (
    table_name TEXT PRIMARY KEY REFERENCES sluice_tables (name),
    catalog TEXT NOT NULL,
    metadata_location TEXT,
    current_snapshot_id BIGINT,
    refreshed_at BIGINT,
    error TEXT,
    error_at BIGINT
);
