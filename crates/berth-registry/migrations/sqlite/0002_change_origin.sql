-- Where a change came from: `local` (a client of this registry) or `parent` (applied by
-- content sync from the parent). A ReadWrite connected registry sends its local changes up,
-- never what it received from above, so nothing echoes.
ALTER TABLE changes ADD COLUMN origin TEXT NOT NULL DEFAULT 'local';
