-- Demo data for the local stack (`cargo xtask up` runs this against the gateway's database after
-- the services have applied their migrations). Safe to run again: existing rows are left alone.

-- The platform's five feature flags, all off (hotel platform design, section 4.3).
INSERT INTO feature_flags (name, enabled, rollout_pct, description, updated_by) VALUES
    ('supplier.realtime.sync',    false, 100, 'Push supplier inventory changes in real time instead of polling', 'seed'),
    ('risk.auto.reject',          false, 100, 'Reject orders above risk.auto.reject.threshold without review', 'seed'),
    ('matching.ai.boost',         false, 100, 'Re-rank matching results with the AI model', 'seed'),
    ('settlement.auto.reconcile', false, 100, 'Reconcile supplier settlements automatically', 'seed'),
    ('admin.v2',                  false, 100, 'Serve the new admin console', 'seed')
ON CONFLICT (name) DO NOTHING;

-- Hot-reload config for the development environment (section 4.1's example row, and the amount
-- above which orders of tenants with risk.auto.reject on are refused).
INSERT INTO platform_config (key, value, env, description, updated_by) VALUES
    ('matching.algorithm.weights',
     '{"price_weight":0.4,"rating_weight":0.3,"availability_weight":0.2,"supplier_reliability_weight":0.1}',
     'development', 'Weights of the matching algorithm', 'seed'),
    ('risk.auto.reject.threshold', '10000', 'development',
     'Orders above this amount are refused for tenants with risk.auto.reject on', 'seed'),
    ('log.level', '"info"', 'development', 'Log level of every service, followed at run time', 'seed')
ON CONFLICT (env, key) DO NOTHING;
