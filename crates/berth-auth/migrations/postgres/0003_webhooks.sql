-- Webhooks (as migrations/sqlite/0006_webhooks.sql): definitions, positions, delivery
-- records, and the events connected registries relayed up.
CREATE TABLE webhooks (
    name        TEXT COLLATE "C" PRIMARY KEY,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE webhook_positions (
    webhook  TEXT NOT NULL,
    log      TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    PRIMARY KEY (webhook, log)
);

CREATE TABLE webhook_deliveries (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    body       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    UNIQUE (webhook, event_id)
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook, seq);

CREATE TABLE site_events (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry  TEXT NOT NULL,
    event_id  TEXT NOT NULL UNIQUE,
    body      TEXT NOT NULL,
    at        BIGINT NOT NULL
);
