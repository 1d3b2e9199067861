-- Consumer data containers: where hydrations copy tables to and consumer
-- views live. `connection` is a PostgreSQL URL or `env:VAR` naming the
-- environment variable that holds one; it is never shown with its password.
CREATE TABLE containers (
    name TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('postgres', 'glue')),
    connection TEXT,
    glue_database TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
