-- CDC streams, their batches and every version of their bookmark.
-- JSON columns hold the bookmark's sections as the API shows them.
CREATE TABLE streams (
    name TEXT COLLATE "C" PRIMARY KEY,
    table_name TEXT NOT NULL,
    source TEXT NOT NULL,
    expected_schema_hash TEXT,
    bookmark_version BIGINT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('load', 'delta')),
    load TEXT NOT NULL,
    delta TEXT,
    bookmark_updated_at BIGINT NOT NULL,
    last_token BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE stream_batches (
    id TEXT COLLATE "C" PRIMARY KEY,
    stream_name TEXT COLLATE "C" NOT NULL REFERENCES streams (name),
    run_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'committed', 'failed')),
    token BIGINT NOT NULL,
    base_version BIGINT NOT NULL,
    ttl_seconds BIGINT NOT NULL,
    opened_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    counts TEXT,
    snapshot_id BIGINT,
    schema_hash TEXT,
    result TEXT
);

-- The database refuses a second open batch on a stream, or a reused token,
-- whatever the code does.
CREATE UNIQUE INDEX stream_batches_one_open ON stream_batches (stream_name) WHERE state = 'open';
CREATE UNIQUE INDEX stream_batches_token ON stream_batches (stream_name, token);

-- History is append-only; the primary key makes a fork (two versions with
-- the same number) impossible.
CREATE TABLE bookmark_versions (
    stream_name TEXT COLLATE "C" NOT NULL REFERENCES streams (name),
    version BIGINT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('load', 'delta')),
    load TEXT NOT NULL,
    delta TEXT,
    at BIGINT NOT NULL,
    cause TEXT NOT NULL CHECK (cause IN ('created', 'batch', 'rewind', 'reset')),
    batch_id TEXT,
    run_id TEXT,
    counts TEXT,
    snapshot_id BIGINT,
    rewound_to BIGINT,
    actor TEXT,
    reason TEXT,
    PRIMARY KEY (stream_name, version)
);

CREATE INDEX bookmark_versions_at ON bookmark_versions (stream_name, at);

ALTER TABLE events ADD COLUMN stream_name TEXT COLLATE "C";
CREATE INDEX events_stream ON events (stream_name, id) WHERE stream_name IS NOT NULL;
