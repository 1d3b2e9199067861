-- Bearer tokens (only a hash of the secret is kept) and the principal
-- recorded with every event.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('job', 'scheduler', 'operator', 'admin')),
    scopes TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

ALTER TABLE events ADD COLUMN actor TEXT;
