-- Seeds the platform's feature flags, all off, into a database migrated with
-- groundwork-flags' migrations. Safe to run again: existing flags are left as they are.
INSERT INTO feature_flags (name, enabled, rollout_pct, description, updated_by) VALUES
    ('supplier.realtime.sync',    false, 100, 'Push supplier inventory changes in real time instead of polling', 'seed'),
    ('risk.auto.reject',          false, 100, 'Reject bookings the risk model scores above the threshold without review', 'seed'),
    ('matching.ai.boost',         false, 100, 'Re-rank matching results with the AI model', 'seed'),
    ('settlement.auto.reconcile', false, 100, 'Reconcile supplier settlements automatically', 'seed'),
    ('admin.v2',                  false, 100, 'Serve the new admin console', 'seed')
ON CONFLICT (name) DO NOTHING;
