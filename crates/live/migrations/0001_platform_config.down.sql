-- Removes what 0001 added. The seed's own table is dropped too: this migration created it, and a
-- down script that left half of it behind would make the next up ambiguous.
DROP TRIGGER IF EXISTS platform_config_record ON platform_config;
DROP TRIGGER IF EXISTS platform_config_stamp ON platform_config;
DROP FUNCTION IF EXISTS platform_config_record();
DROP FUNCTION IF EXISTS platform_config_stamp();
DROP FUNCTION IF EXISTS platform_config_actor(TEXT);
DROP TABLE IF EXISTS platform_config_history;
DROP TABLE IF EXISTS platform_config;
DROP SEQUENCE IF EXISTS platform_config_revision_seq;
