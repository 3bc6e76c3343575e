-- The registry's secret keys (token signing, data URL signing), shared by every process that
-- shares this store; rotated keys stay until what they signed has expired.
CREATE TABLE keys (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,   -- JSON: purpose, secret (base64), created_at, retired_at
    created_at  INTEGER NOT NULL
);
