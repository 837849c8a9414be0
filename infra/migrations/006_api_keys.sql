-- API keys for `vidx serve` (issue 16): each key maps to exactly one owner.
--
-- Only a SHA-256 of the key is stored: the key itself is printed once by
-- `vidx apikey create` and never kept, so a database dump cannot be used to
-- call the API. Keys are high-entropy random tokens, so a plain hash (no salt,
-- no slow KDF) is enough and lets a request find its key by index.

CREATE TABLE IF NOT EXISTS api_keys (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL,
    name        text NOT NULL DEFAULT '',
    key_sha256  bytea NOT NULL UNIQUE CHECK (octet_length(key_sha256) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX IF NOT EXISTS api_keys_owner_idx ON api_keys (owner_id);
