-- An upload session's progress lives with its row, so any process (any node, once several
-- share the database) can continue it: the bytes received so far, and the SHA-256 state of
-- exactly those bytes (sha2's serialised state, about 110 bytes). Each append updates both
-- on the condition that `received` is still what the writer started from, so a second
-- writer fails instead of corrupting the session. A NULL state means "hash the stored bytes
-- again" (sessions older than this migration).
ALTER TABLE uploads ADD COLUMN received INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN hash_state BLOB;
ALTER TABLE uploads ADD COLUMN updated_at INTEGER;
