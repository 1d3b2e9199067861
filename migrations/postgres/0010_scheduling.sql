-- Scheduling: job definitions, their runs in Glue and compaction requests.
-- Each is a JSON document (the core type) beside the columns queries
-- filter and order on; writes compare `version` (optimistic locking).

CREATE TABLE jobs (
    name TEXT COLLATE "C" PRIMARY KEY,
    -- core scheduling::JobSpec
    doc TEXT NOT NULL,
    -- The next planned fire of its cron schedule; none without one.
    next_fire_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX jobs_due ON jobs (next_fire_at) WHERE next_fire_at IS NOT NULL;

CREATE TABLE runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    job TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    -- Queued or retrying: when it may start; running: its next poll.
    due_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    -- core scheduling::Run
    doc TEXT NOT NULL
);

CREATE INDEX runs_active ON runs (due_at)
    WHERE state IN ('queued', 'starting', 'running', 'retrying');
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_by_state ON runs (state, id);

CREATE TABLE compactions (
    id TEXT COLLATE "C" PRIMARY KEY,
    table_name TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    -- core scheduling::Compaction
    doc TEXT NOT NULL
);

-- One pending compaction per table: a second request answers the first.
CREATE UNIQUE INDEX compactions_pending ON compactions (table_name)
    WHERE state IN ('queued', 'waiting', 'running');
CREATE INDEX compactions_by_table ON compactions (table_name, id);
