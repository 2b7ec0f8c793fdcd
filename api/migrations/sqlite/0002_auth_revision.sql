-- A counter bumped in the same transaction as every key revocation and
-- sign-out, so servers that remember verified credentials (see
-- api/src/credentials.rs) learn that one stopped working.

CREATE TABLE auth_revision (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);

INSERT INTO auth_revision (id, revision) VALUES (1, 0);
