-- Tables, their leases (live and finished) and the event log.
-- Names and ids compare byte-wise (COLLATE "C"): they are identifiers, and
-- locale-aware comparison was a measurable share of the lease path's CPU.
CREATE TABLE sluice_tables (
    name TEXT COLLATE "C" PRIMARY KEY,
    catalog TEXT,
    compaction_job TEXT,
    max_compaction_deferral_seconds BIGINT NOT NULL,
    last_token BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE leases (
    id TEXT COLLATE "C" PRIMARY KEY,
    table_name TEXT COLLATE "C" NOT NULL REFERENCES sluice_tables (name),
    seq BIGINT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('read', 'write')),
    holder TEXT NOT NULL,
    purpose TEXT,
    state TEXT NOT NULL,
    token BIGINT,
    ttl_seconds BIGINT NOT NULL,
    requested_at BIGINT NOT NULL,
    granted_at BIGINT,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    idempotency_key TEXT COLLATE "C",
    pin_snapshot_id BIGINT
);

CREATE INDEX leases_live ON leases (table_name, seq) WHERE state IN ('waiting', 'granted');
CREATE UNIQUE INDEX leases_idempotency ON leases (table_name, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The database refuses a second grant with the same token, whatever the code does.
CREATE UNIQUE INDEX leases_token ON leases (table_name, token) WHERE token IS NOT NULL;

CREATE TABLE events (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    table_name TEXT COLLATE "C",
    lease_id TEXT COLLATE "C",
    data TEXT NOT NULL
);

CREATE INDEX events_table ON events (table_name, id);

-- Event ids are taken from this one row inside the writing transaction, so
-- ids are handed out in commit order even with several replicas writing:
-- a reader paging with `after=ID` never skips an event committed later
-- under a smaller id.
CREATE TABLE event_seq (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    last_id BIGINT NOT NULL
);
INSERT INTO event_seq (only_row, last_id) VALUES (TRUE, 0);
