-- Removes what 0001 added. The seed's own table is dropped too: this migration created it, and a
-- down script that left half of it behind would make the next up ambiguous.
DROP TRIGGER IF EXISTS feature_flags_record ON feature_flags;
DROP TRIGGER IF EXISTS feature_flags_stamp ON feature_flags;
DROP FUNCTION IF EXISTS feature_flags_record();
DROP FUNCTION IF EXISTS feature_flags_stamp();
DROP FUNCTION IF EXISTS feature_flags_actor(TEXT);
DROP TABLE IF EXISTS feature_flags_history;
DROP TABLE IF EXISTS feature_flags;
DROP SEQUENCE IF EXISTS feature_flags_revision_seq;
