//! `redis_topology_pool` against private deployments started from `redis-server` for each test: a
//! 3-master Redis Cluster and a Sentinel set-up (one master, one replica, three sentinels).

use std::time::Duration;

use deadpool_redis::redis;
use groundwork_connect::{
    ConnectError, RedisOptions, RedisPool, RedisTopology, RedisTopologySettings, TlsSettings,
    redis_topology_pool,
};
use groundwork_testkit::{SENTINEL_MASTER, TestRedisCluster, TestRedisSentinel};

/// How long a failover may take end to end: the sentinels notice after 1 s and elect within a
/// few more.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

fn options() -> RedisOptions {
    let mut options = RedisOptions::default();
    options.connect_timeout = Duration::from_secs(2);
    options
}

async fn set_get(pool: &RedisPool, key: &str, value: &str) -> anyhow::Result<String> {
    let mut connection = pool.get().await?;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut connection)
        .await?;
    Ok(redis::cmd("GET")
        .arg(key)
        .query_async(&mut connection)
        .await?)
}

#[tokio::test]
async fn a_cluster_pool_reads_and_writes_keys_of_every_master_from_one_seed() -> anyhow::Result<()>
{
    let cluster = TestRedisCluster::start().await?;
    let pool = redis_topology_pool(
        &cluster.url(),
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Cluster),
        &options(),
    )
    .await?;
    assert_eq!(pool.topology(), RedisTopology::Cluster);
    for i in 0..200 {
        let key = format!("key-{i}");
        assert_eq!(set_get(&pool, &key, &i.to_string()).await?, i.to_string());
    }
    // Every master holds some of them: the keys really were spread over the slots.
    for master in cluster.master_urls() {
        let mut connection = redis::Client::open(master.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await?;
        assert!(keys > 20, "{master} holds {keys} of 200 keys");
    }
    // Several keys in one command must share a slot: a hash tag does that.
    let mut connection = pool.get().await?;
    let () = redis::cmd("MSET")
        .arg("{tenant-1}:a")
        .arg("1")
        .arg("{tenant-1}:b")
        .arg("2")
        .query_async(&mut connection)
        .await?;
    let both: Vec<String> = redis::cmd("MGET")
        .arg("{tenant-1}:a")
        .arg("{tenant-1}:b")
        .query_async(&mut connection)
        .await?;
    assert_eq!(both, ["1", "2"]);
    Ok(())
}

#[tokio::test]
async fn a_cluster_pool_starts_from_any_listed_node_when_the_first_is_wrong() -> anyhow::Result<()>
{
    let cluster = TestRedisCluster::start().await?;
    // A URL naming a port nothing listens on; `nodes` names the real nodes.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let pool = redis_topology_pool(
        &format!("redis://127.0.0.1:{unused}"),
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Cluster).with_nodes(cluster.nodes()),
        &options(),
    )
    .await?;
    assert_eq!(set_get(&pool, "seeded", "yes").await?, "yes");
    Ok(())
}

/// Kills the master under a steady stream of writes and counts the writes that fail until the
/// promoted replica takes them; the pool is the same one throughout.
#[tokio::test]
async fn a_sentinel_pool_follows_a_failover_without_a_restart() -> anyhow::Result<()> {
    let mut setup = TestRedisSentinel::start().await?;
    let pool = redis_topology_pool(
        &setup.url(),
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Sentinel)
            .with_nodes(setup.nodes())
            .with_sentinel_master(SENTINEL_MASTER),
        &options(),
    )
    .await?;
    assert_eq!(pool.topology(), RedisTopology::Sentinel);
    assert_eq!(set_get(&pool, "before", "kept").await?, "kept");
    // The replica has the key before the master dies.
    let mut connection = pool.get().await?;
    let replicas: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut connection)
        .await?;
    assert_eq!(replicas, 1);
    drop(connection);

    let old = setup.kill_master()?;
    let deadline = tokio::time::Instant::now() + FAILOVER_LIMIT;
    let mut failed = 0_u32;
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        match set_get(&pool, &format!("during-{attempt}"), "x").await {
            Ok(value) if value == "x" => break,
            Ok(value) => anyhow::bail!("read back {value:?} instead of \"x\""),
            Err(_) => failed += 1,
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no write succeeded within {FAILOVER_LIMIT:?} of killing the master ({failed} failed)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = setup.wait_for_new_master(old).await?;
    assert_ne!(new, old);
    eprintln!(
        "failover: {failed} of {attempt} writes failed while the sentinels promoted the replica"
    );
    assert!(
        failed > 0,
        "the first write after the kill cannot reach the dead master"
    );
    let mut connection = pool.get().await?;
    let kept: String = redis::cmd("GET")
        .arg("before")
        .query_async(&mut connection)
        .await?;
    assert_eq!(kept, "kept");
    Ok(())
}

#[tokio::test]
async fn nodes_with_a_single_server_or_a_bad_node_are_refused_naming_the_setting() {
    let single = redis_topology_pool(
        "redis://:s3cret@127.0.0.1:6379",
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Single).with_nodes("127.0.0.1:6380"),
        &options(),
    )
    .await;
    let Err(error @ ConnectError::Url { .. }) = single else {
        panic!("expected a URL error, got {single:?}");
    };
    let text = error.to_string();
    assert!(
        text.contains("`nodes`") && text.contains("`single`"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");

    let bad = redis_topology_pool(
        "redis://:s3cret@127.0.0.1:6379",
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Cluster).with_nodes("127.0.0.1"),
        &options(),
    )
    .await;
    let Err(error) = bad else {
        panic!("expected an error for a node without a port");
    };
    let text = error.to_string();
    assert!(
        text.contains("`127.0.0.1`") && text.contains("host:port"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}
