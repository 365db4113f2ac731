-- The seed's platform_config table (hotel platform, section 4.1), made fit for hot reload: one
-- value per key and environment (the seed's `key UNIQUE` cannot hold a key in two environments),
-- updated_at/updated_by stamped on every write, a revision from a sequence on every change for
-- lost-update protection, a history table, and a trigger that announces each change with
-- pg_notify. The triggers fire for plain SQL too, so an operator's UPDATE in psql reaches every
-- service.

CREATE SEQUENCE IF NOT EXISTS platform_config_revision_seq;

CREATE TABLE IF NOT EXISTS platform_config (
    id          SERIAL PRIMARY KEY,
    key         VARCHAR(255) NOT NULL,
    value       JSONB NOT NULL,
    env         VARCHAR(20) NOT NULL DEFAULT 'production',
    description TEXT,
    updated_at  TIMESTAMPTZ DEFAULT NOW(),
    updated_by  VARCHAR(100)
);

ALTER TABLE platform_config
    ADD COLUMN IF NOT EXISTS revision BIGINT NOT NULL DEFAULT nextval('platform_config_revision_seq');

-- A table created from the seed's DDL is unique on key alone; replace that with (env, key).
ALTER TABLE platform_config DROP CONSTRAINT IF EXISTS platform_config_key_key;
DO $$
BEGIN
    ALTER TABLE platform_config ADD CONSTRAINT platform_config_env_key UNIQUE (env, key);
EXCEPTION WHEN duplicate_table OR duplicate_object THEN
    NULL;
END
$$;
-- The seed's index; the unique constraint's index serves the same lookups, so it is not created
-- on new tables, and left alone on tables that have it.

CREATE TABLE IF NOT EXISTS platform_config_history (
    id         BIGSERIAL PRIMARY KEY,
    env        VARCHAR(20) NOT NULL,
    key        VARCHAR(255) NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    old_row    JSONB,
    new_row    JSONB,
    revision   BIGINT NOT NULL,
    changed_by VARCHAR(100),
    changed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS platform_config_history_env_key_revision
    ON platform_config_history (env, key, revision DESC);

-- Who made a change: the row's updated_by when the writer set it, else the session's
-- `groundwork.actor` setting (the admin API sets it), else the database user.
CREATE OR REPLACE FUNCTION platform_config_actor(explicit TEXT) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(explicit, ''), NULLIF(current_setting('groundwork.actor', true), ''), session_user::text)
$$;

CREATE OR REPLACE FUNCTION platform_config_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('platform_config_revision_seq');
    NEW.updated_at := NOW();
    -- A plain UPDATE that does not mention updated_by must not keep the previous writer's name.
    IF TG_OP = 'UPDATE' AND NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
        NEW.updated_by := NULL;
    END IF;
    NEW.updated_by := platform_config_actor(NEW.updated_by);
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION platform_config_record() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rev BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        rev := nextval('platform_config_revision_seq');
        INSERT INTO platform_config_history (env, key, op, old_row, new_row, revision, changed_by)
        VALUES (OLD.env, OLD.key, TG_OP, to_jsonb(OLD), NULL, rev, platform_config_actor(NULL));
        PERFORM pg_notify('groundwork_platform_config',
            json_build_object('env', OLD.env, 'key', OLD.key, 'revision', rev, 'op', TG_OP)::text);
    ELSE
        rev := NEW.revision;
        INSERT INTO platform_config_history (env, key, op, old_row, new_row, revision, changed_by)
        VALUES (NEW.env, NEW.key, TG_OP, CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END, to_jsonb(NEW), rev, NEW.updated_by);
        -- An UPDATE that moves a key to another environment or renames it changes two places.
        IF TG_OP = 'UPDATE' AND (OLD.env, OLD.key) IS DISTINCT FROM (NEW.env, NEW.key) THEN
            PERFORM pg_notify('groundwork_platform_config',
                json_build_object('env', OLD.env, 'key', OLD.key, 'revision', rev, 'op', 'DELETE')::text);
        END IF;
        -- The payload names the change, never the value: NOTIFY payloads are capped near 8000
        -- bytes, and a JSONB value can be far larger.
        PERFORM pg_notify('groundwork_platform_config',
            json_build_object('env', NEW.env, 'key', NEW.key, 'revision', rev, 'op', TG_OP)::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS platform_config_stamp ON platform_config;
CREATE TRIGGER platform_config_stamp
    BEFORE INSERT OR UPDATE ON platform_config
    FOR EACH ROW EXECUTE FUNCTION platform_config_stamp();

DROP TRIGGER IF EXISTS platform_config_record ON platform_config;
CREATE TRIGGER platform_config_record
    AFTER INSERT OR UPDATE OR DELETE ON platform_config
    FOR EACH ROW EXECUTE FUNCTION platform_config_record();
