-- The nodes sharing this database, each with where it keeps blobs, and when it was last
-- seen alive (the database's clock, so nodes' clocks do not matter). A node starting next
-- to a live one that keeps blobs elsewhere refuses to start: their clients would see
-- manifests whose blobs they cannot read.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,   -- host name and data directory
    storage     TEXT NOT NULL,      -- where its blobs are: file://host/dir, s3://…, azblob://…
    started_at  TIMESTAMPTZ NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL
);
