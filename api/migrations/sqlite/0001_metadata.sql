-- The server's metadata: API keys, browser sessions, filter presets, audit log.
-- Timestamps are UTC microseconds since the epoch; booleans are 0/1 integers
-- (the same columns as the Postgres migration, so one set of queries serves both).

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    team_id BIGINT NOT NULL,
    team_slug TEXT NOT NULL,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    key_id BIGINT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE presets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    name TEXT NOT NULL,
    filters TEXT NOT NULL,
    is_default BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (team_id, user_name, name)
);

CREATE UNIQUE INDEX presets_one_default ON presets (team_id, user_name) WHERE is_default = 1;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    team_id BIGINT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    filters TEXT NOT NULL,
    row_count BIGINT NOT NULL
);

CREATE INDEX audit_log_team_at ON audit_log (team_id, at);
