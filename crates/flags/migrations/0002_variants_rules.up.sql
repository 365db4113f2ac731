-- Variants and context rules. Both columns are nullable and default to NULL, so rows written by
-- the seed's DDL and by the TypeScript services (which never name them) stay plain on/off flags,
-- evaluated exactly as before. The history trigger stores whole rows (to_jsonb), so changes to
-- these columns are recorded and rolled back like any other.
--
-- variants: [{"name": "blue", "weight": 50, "payload": <any JSON>}, ...], weights adding up to 100
-- rules:    [{"attribute": "plan", "operator": "in", "values": ["gold"]}, ...]
--
-- The database checks the shape (a JSON array or NULL); the library checks the contents (weights,
-- operators, values) on every write and every load, naming the flag and the field.

ALTER TABLE feature_flags
    ADD COLUMN IF NOT EXISTS variants JSONB,
    ADD COLUMN IF NOT EXISTS rules    JSONB;

DO $$
BEGIN
    ALTER TABLE feature_flags
        ADD CONSTRAINT feature_flags_variants_array
        CHECK (variants IS NULL OR jsonb_typeof(variants) = 'array');
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

DO $$
BEGIN
    ALTER TABLE feature_flags
        ADD CONSTRAINT feature_flags_rules_array
        CHECK (rules IS NULL OR jsonb_typeof(rules) = 'array');
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
