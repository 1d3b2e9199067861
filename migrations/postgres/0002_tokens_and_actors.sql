-- Bearer tokens (only a hash of the secret is kept) and the principal
-- recorded with every event.
CREATE TABLE api_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('job', 'scheduler', 'operator', 'admin')),
    scopes TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

ALTER TABLE events ADD COLUMN actor TEXT;
