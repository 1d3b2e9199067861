-- Consumer views: each maps to one physical table of its container.
CREATE TABLE views (
    container TEXT COLLATE "C" NOT NULL REFERENCES containers (name),
    name TEXT COLLATE "C" NOT NULL,
    target TEXT NOT NULL,
    -- The columns it exposes, a JSON array of names, in order.
    columns TEXT NOT NULL,
    -- A live hydration remaps it by itself unless this is turned off.
    auto_remap BOOLEAN NOT NULL DEFAULT TRUE,
    hydration_id TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (container, name)
);

-- Every change of a view's mapping, kept: rollback and orphans read it.
CREATE TABLE view_remaps (
    id BIGSERIAL PRIMARY KEY,
    container TEXT COLLATE "C" NOT NULL,
    view_name TEXT COLLATE "C" NOT NULL,
    -- The whole change (core views::Remap) as a JSON document.
    doc TEXT NOT NULL,
    from_target TEXT,
    to_target TEXT NOT NULL,
    at BIGINT NOT NULL
);

CREATE INDEX view_remaps_by_view ON view_remaps (container, view_name, id);

-- The outbox: side effects recorded in the transaction of the change that
-- needs them, carried out after it (and again after a crash) until done.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    finished_at BIGINT,
    error TEXT
);

CREATE INDEX outbox_pending ON outbox (state, next_attempt_at);
