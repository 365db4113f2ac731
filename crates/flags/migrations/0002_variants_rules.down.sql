-- Drops variants and rules: every flag becomes the seed's on/off flag again. Their history rows
-- keep the dropped values.
ALTER TABLE feature_flags
    DROP CONSTRAINT IF EXISTS feature_flags_rules_array,
    DROP CONSTRAINT IF EXISTS feature_flags_variants_array,
    DROP COLUMN IF EXISTS rules,
    DROP COLUMN IF EXISTS variants;
