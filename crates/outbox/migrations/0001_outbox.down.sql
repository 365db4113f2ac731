DROP TRIGGER IF EXISTS groundwork_outbox_notify ON groundwork_outbox;
DROP FUNCTION IF EXISTS groundwork_outbox_notify();
DROP TABLE IF EXISTS groundwork_outbox;
