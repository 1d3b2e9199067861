-- IAM authentication: the AWS identities (ARN patterns, IAM wildcards)
-- that become sluice principals, with a role and table-prefix scopes.
CREATE TABLE aws_principals (
    pattern TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('job', 'scheduler', 'operator', 'admin')),
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
