-- Service accounts and their API keys. Keys are stored only as SHA-256
-- hashes (they are 256-bit random, so a fast hash is the right one); an
-- account may hold several keys so a rotation can overlap.
CREATE TABLE dg_service_account (
    account_id   TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    tenants_json TEXT    NOT NULL,
    scopes_json  TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    disabled_at  TEXT
);

CREATE TABLE dg_api_key (
    key_id       TEXT    NOT NULL PRIMARY KEY,
    account_id   TEXT    NOT NULL REFERENCES dg_service_account (account_id),
    key_hash     TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX idx_api_key_account ON dg_api_key (account_id);
