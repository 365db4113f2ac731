//! `RedisCheck` on pools of each topology: the shared server, a private Redis Cluster and a
//! private Sentinel set-up whose master is killed.

use std::time::Duration;

use groundwork_connect::{
    RedisOptions, RedisPool, RedisTopology, RedisTopologySettings, TlsSettings, redis_topology_pool,
};
use groundwork_health::{CheckResult, HealthCheck, RedisCheck, Status};
use groundwork_testkit::{SENTINEL_MASTER, TestRedis, TestRedisCluster, TestRedisSentinel};

const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

fn observation<'a>(result: &'a CheckResult, name: &str) -> Option<&'a serde_json::Value> {
    result
        .observations
        .iter()
        .find(|observation| observation.measurement == name)
        .map(|observation| &observation.value)
}

async fn pool(url: &str, topology: RedisTopologySettings) -> anyhow::Result<RedisPool> {
    let mut options = RedisOptions::default();
    options.connect_timeout = Duration::from_secs(2);
    Ok(redis_topology_pool(url, &TlsSettings::default(), &topology, &options).await?)
}

#[tokio::test]
async fn a_single_server_passes_and_says_single() -> anyhow::Result<()> {
    let redis = TestRedis::create().await?;
    let result = RedisCheck::new(redis.pool().clone()).check().await;
    assert_eq!(result.status, Status::Pass, "{:?}", result.output);
    assert_eq!(observation(&result, "topology"), Some(&"single".into()));
    Ok(())
}

#[tokio::test]
async fn a_cluster_passes_when_every_slot_is_served_and_says_cluster() -> anyhow::Result<()> {
    let cluster = TestRedisCluster::start().await?;
    let pool = pool(
        &cluster.url(),
        RedisTopologySettings::new(RedisTopology::Cluster),
    )
    .await?;
    let result = RedisCheck::new(pool).check().await;
    assert_eq!(result.status, Status::Pass, "{:?}", result.output);
    assert_eq!(observation(&result, "topology"), Some(&"cluster".into()));
    Ok(())
}

#[tokio::test]
async fn a_sentinel_master_fails_when_killed_and_passes_again_after_the_failover()
-> anyhow::Result<()> {
    let mut setup = TestRedisSentinel::start().await?;
    let pool = pool(
        &setup.url(),
        RedisTopologySettings::new(RedisTopology::Sentinel)
            .with_nodes(setup.nodes())
            .with_sentinel_master(SENTINEL_MASTER),
    )
    .await?;
    let check = RedisCheck::new(pool);
    let result = check.check().await;
    assert_eq!(result.status, Status::Pass, "{:?}", result.output);
    assert_eq!(observation(&result, "topology"), Some(&"sentinel".into()));

    let old = setup.kill_master()?;
    // The sentinels wait a second before they even suspect the master: until then the check
    // reaches the dead server.
    let result = check.check().await;
    assert_eq!(result.status, Status::Fail, "the master was just killed");
    let new = setup.wait_for_new_master(old).await?;
    assert_ne!(new, old);
    let deadline = tokio::time::Instant::now() + FAILOVER_LIMIT;
    loop {
        let result = check.check().await;
        if result.status == Status::Pass {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the check still fails {FAILOVER_LIMIT:?} after the failover: {:?}",
            result.output
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
