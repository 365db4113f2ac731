-- The transactional outbox: a service inserts a row in the same transaction as the change the
-- event announces; a relay publishes committed rows to RabbitMQ and deletes each once the broker
-- confirmed it. A row that the broker refused (unroutable, nack) stays, with `attempts`,
-- `last_error` and a later `available_at`.
CREATE TABLE IF NOT EXISTS groundwork_outbox (
    id           BIGSERIAL PRIMARY KEY,
    exchange     TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    -- AMQP headers (`traceparent`, `tracestate`, ...) as a JSON object of strings.
    headers      JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(headers) = 'object'),
    content_type TEXT,
    message_id   TEXT,
    -- The AMQP `type` property.
    kind         TEXT,
    body         BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    available_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);

-- The relay's claim: `WHERE available_at <= NOW() ORDER BY id`.
CREATE INDEX IF NOT EXISTS groundwork_outbox_available ON groundwork_outbox (available_at, id);

-- NOTIFY is delivered when the inserting transaction commits, and never if it rolls back: the
-- relays wake exactly when there is something committed to publish. One notification per
-- statement; PostgreSQL folds identical ones of a transaction into one.
CREATE OR REPLACE FUNCTION groundwork_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('groundwork_outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS groundwork_outbox_notify ON groundwork_outbox;
CREATE TRIGGER groundwork_outbox_notify
    AFTER INSERT ON groundwork_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION groundwork_outbox_notify();
