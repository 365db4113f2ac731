-- The seed's feature_flags table (hotel platform, section 4.3), plus what hot reload and an audit
-- trail need: a rollout range check, updated_at/updated_by, a revision from a sequence on every
-- change, a history table, and a trigger that announces each change with pg_notify. The trigger
-- fires for plain SQL too, so an operator's UPDATE in psql reaches every service.

CREATE SEQUENCE IF NOT EXISTS feature_flags_revision_seq;

CREATE TABLE IF NOT EXISTS feature_flags (
    id          SERIAL PRIMARY KEY,
    name        VARCHAR(100) NOT NULL UNIQUE,
    enabled     BOOLEAN NOT NULL DEFAULT false,
    rollout_pct INTEGER NOT NULL DEFAULT 100,  -- 0~100
    whitelist   TEXT[],                        -- tenant whitelist
    description TEXT,
    created_at  TIMESTAMPTZ DEFAULT NOW()
);

-- Tables created from the seed's DDL before Groundwork get the new columns too.
ALTER TABLE feature_flags
    ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    ADD COLUMN IF NOT EXISTS updated_by VARCHAR(100),
    ADD COLUMN IF NOT EXISTS revision   BIGINT NOT NULL DEFAULT nextval('feature_flags_revision_seq');

-- NOT VALID: legacy rows outside the range stay readable (the library reports them and treats
-- them as off); every new write is checked.
DO $$
BEGIN
    ALTER TABLE feature_flags
        ADD CONSTRAINT feature_flags_rollout_pct_range CHECK (rollout_pct BETWEEN 0 AND 100) NOT VALID;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

CREATE TABLE IF NOT EXISTS feature_flags_history (
    id         BIGSERIAL PRIMARY KEY,
    name       VARCHAR(100) NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
    old_row    JSONB,
    new_row    JSONB,
    revision   BIGINT NOT NULL,
    changed_by VARCHAR(100),
    changed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS feature_flags_history_name_revision
    ON feature_flags_history (name, revision DESC);

-- Who made a change: the row's updated_by when the writer set it, else the session's
-- `groundwork.actor` setting (the admin API sets it), else the database user.
CREATE OR REPLACE FUNCTION feature_flags_actor(explicit TEXT) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(explicit, ''), NULLIF(current_setting('groundwork.actor', true), ''), session_user::text)
$$;

CREATE OR REPLACE FUNCTION feature_flags_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('feature_flags_revision_seq');
    NEW.updated_at := NOW();
    -- A plain UPDATE that does not mention updated_by must not keep the previous writer's name.
    IF TG_OP = 'UPDATE' AND NEW.updated_by IS NOT DISTINCT FROM OLD.updated_by THEN
        NEW.updated_by := NULL;
    END IF;
    NEW.updated_by := feature_flags_actor(NEW.updated_by);
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION feature_flags_record() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rev  BIGINT;
    flag TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        rev := nextval('feature_flags_revision_seq');
        flag := OLD.name;
        INSERT INTO feature_flags_history (name, op, old_row, new_row, revision, changed_by)
        VALUES (OLD.name, TG_OP, to_jsonb(OLD), NULL, rev, feature_flags_actor(NULL));
    ELSE
        rev := NEW.revision;
        flag := NEW.name;
        INSERT INTO feature_flags_history (name, op, old_row, new_row, revision, changed_by)
        VALUES (NEW.name, TG_OP, CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END, to_jsonb(NEW), rev, NEW.updated_by);
    END IF;
    -- The payload names the change, never the value: NOTIFY payloads are capped near 8000 bytes.
    PERFORM pg_notify('groundwork_feature_flags',
        json_build_object('name', flag, 'revision', rev, 'op', TG_OP)::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS feature_flags_stamp ON feature_flags;
CREATE TRIGGER feature_flags_stamp
    BEFORE INSERT OR UPDATE ON feature_flags
    FOR EACH ROW EXECUTE FUNCTION feature_flags_stamp();

DROP TRIGGER IF EXISTS feature_flags_record ON feature_flags;
CREATE TRIGGER feature_flags_record
    AFTER INSERT OR UPDATE OR DELETE ON feature_flags
    FOR EACH ROW EXECUTE FUNCTION feature_flags_record();
