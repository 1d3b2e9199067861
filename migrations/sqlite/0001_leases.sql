-- Tables, their leases (live and finished) and the event log.
CREATE TABLE sluice_tables (
    name TEXT PRIMARY KEY NOT NULL,
    catalog TEXT,
    compaction_job TEXT,
    max_compaction_deferral_seconds INTEGER NOT NULL,
    last_token INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE leases (
    id TEXT PRIMARY KEY NOT NULL,
    table_name TEXT NOT NULL REFERENCES sluice_tables (name),
    seq INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('read', 'write')),
    holder TEXT NOT NULL,
    purpose TEXT,
    state TEXT NOT NULL,
    token INTEGER,
    ttl_seconds INTEGER NOT NULL,
    requested_at INTEGER NOT NULL,
    granted_at INTEGER,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    idempotency_key TEXT,
    pin_snapshot_id INTEGER
);

CREATE INDEX leases_live ON leases (table_name, seq) WHERE state IN ('waiting', 'granted');
CREATE UNIQUE INDEX leases_idempotency ON leases (table_name, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The database refuses a second grant with the same token, whatever the code does.
CREATE UNIQUE INDEX leases_token ON leases (table_name, token) WHERE token IS NOT NULL;

CREATE TABLE events (
    id INTEGER PRIMARY KEY NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    table_name TEXT,
    lease_id TEXT,
    data TEXT NOT NULL
);

CREATE INDEX events_table ON events (table_name, id);
