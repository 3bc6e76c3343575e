-- Webhooks: their definitions, how far each has delivered the change log (and the relayed
-- events of connected registries), and a record per delivery. Not identity changes: they do
-- not flow down to connected registries.
CREATE TABLE webhooks (
    name        TEXT PRIMARY KEY,
    body        TEXT NOT NULL,      -- JSON: uri, actions, scope, headers, status, secret
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The last change of `log` (`content`: the change log; `sites`: connected registries'
-- events) each webhook has finished with (delivered, or failed for good).
CREATE TABLE webhook_positions (
    webhook  TEXT NOT NULL,
    log      TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (webhook, log)
);

-- One row per event and webhook, updated as its attempts go (retrying, then succeeded or
-- failed); the last ones per webhook are kept.
CREATE TABLE webhook_deliveries (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    body       TEXT NOT NULL,       -- JSON: id, action, status, response code, attempts, ...
    at         INTEGER NOT NULL,
    UNIQUE (webhook, event_id)
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook, seq);

-- Events connected registries raised (their notification patterns) and relayed up to this
-- registry, in the order they arrived: what the root's webhooks deliver with the source
-- naming the connected registry.
CREATE TABLE site_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    registry  TEXT NOT NULL,
    event_id  TEXT NOT NULL UNIQUE,  -- the site's id of the event: a resent one is kept once
    body      TEXT NOT NULL,         -- JSON: the event
    at        INTEGER NOT NULL
);
