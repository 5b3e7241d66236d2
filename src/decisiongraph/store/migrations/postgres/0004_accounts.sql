-- Service accounts and their API keys. Keys are stored only as SHA-256
-- hashes (they are 256-bit random, so a fast hash is the right one); an
-- account may hold several keys so a rotation can overlap.
CREATE TABLE dg_service_account (
    account_id   TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    name         TEXT COLLATE "C"    NOT NULL UNIQUE,
    tenants_json TEXT COLLATE "C"    NOT NULL,
    scopes_json  TEXT COLLATE "C"    NOT NULL,
    created_at   TEXT COLLATE "C"    NOT NULL,
    disabled_at  TEXT
);

CREATE TABLE dg_api_key (
    key_id       TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    account_id   TEXT COLLATE "C"    NOT NULL REFERENCES dg_service_account (account_id),
    key_hash     TEXT COLLATE "C"    NOT NULL,
    created_at   TEXT COLLATE "C"    NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX idx_api_key_account ON dg_api_key (account_id);
