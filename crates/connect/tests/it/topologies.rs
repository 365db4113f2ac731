//! `redis_topology_pool` against a 3-master Redis Cluster and a Sentinel set-up (one master, one
//! replica, three sentinels): the ones `cargo xtask infra up --redis-cluster --redis-sentinel`
//! started when present (keys under the test's own prefix), private ones for tests that kill a
//! master or need TLS.

use std::time::Duration;

use deadpool_redis::redis;
use groundwork_connect::{
    ConnectError, RedisOptions, RedisPool, RedisTopology, RedisTopologySettings, TlsSettings,
    redis_topology_pool,
};
use groundwork_testkit::{
    RedisServerTls, SENTINEL_MASTER, TestCa, TestRedisCluster, TestRedisSentinel,
};

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

async fn get(pool: &RedisPool, key: &str) -> anyhow::Result<String> {
    let mut connection = pool.get().await?;
    Ok(redis::cmd("GET")
        .arg(key)
        .query_async(&mut connection)
        .await?)
}

/// How many replicas acknowledged the writes before: `WAIT 1 5000` on a connection of `pool`.
async fn replicas_in_sync(pool: &RedisPool) -> anyhow::Result<u64> {
    let mut connection = pool.get().await?;
    Ok(redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut connection)
        .await?)
}

#[tokio::test]
async fn a_cluster_pool_reads_and_writes_keys_of_every_master_from_one_seed() -> anyhow::Result<()>
{
    let cluster = TestRedisCluster::create().await?;
    let pool = redis_topology_pool(
        &cluster.url(),
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Cluster),
        &options(),
    )
    .await?;
    assert_eq!(pool.topology(), RedisTopology::Cluster);
    for i in 0..200 {
        let key = cluster.key(&format!("key-{i}"));
        assert_eq!(set_get(&pool, &key, &i.to_string()).await?, i.to_string());
    }
    // Every master holds some of them: the keys really were spread over the slots.
    for master in cluster.master_urls() {
        let keys = cluster.count_keys_on(&master).await?;
        assert!(keys > 20, "{master} holds {keys} of 200 keys");
    }
    // Several keys in one command must share a slot: a hash tag does that.
    let (a, b) = (cluster.key("{tenant-1}:a"), cluster.key("{tenant-1}:b"));
    let mut connection = pool.get().await?;
    let () = redis::cmd("MSET")
        .arg(&a)
        .arg("1")
        .arg(&b)
        .arg("2")
        .query_async(&mut connection)
        .await?;
    let both: Vec<String> = redis::cmd("MGET")
        .arg(&a)
        .arg(&b)
        .query_async(&mut connection)
        .await?;
    assert_eq!(both, ["1", "2"]);
    Ok(())
}

#[tokio::test]
async fn a_cluster_pool_starts_from_any_listed_node_when_the_first_is_wrong() -> anyhow::Result<()>
{
    let cluster = TestRedisCluster::create().await?;
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
    assert_eq!(set_get(&pool, &cluster.key("seeded"), "yes").await?, "yes");
    Ok(())
}

#[tokio::test]
async fn a_sentinel_pool_reads_and_writes_through_the_master_the_sentinels_name()
-> anyhow::Result<()> {
    let setup = TestRedisSentinel::create().await?;
    let pool = redis_topology_pool(
        &setup.url(),
        &TlsSettings::default(),
        &RedisTopologySettings::new(RedisTopology::Sentinel)
            .with_nodes(setup.nodes())
            .with_sentinel_master(setup.master_name()),
        &options(),
    )
    .await?;
    assert_eq!(
        set_get(&pool, &setup.key("through"), "master").await?,
        "master"
    );
    let mut connection = pool.get().await?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
    assert!(
        matches!(role.first(), Some(redis::Value::BulkString(role)) if role.as_slice() == b"master"),
        "{role:?}"
    );
    Ok(())
}

/// A CA, the servers' certificate for 127.0.0.1 signed by it, and client settings trusting it.
fn test_tls() -> anyhow::Result<(RedisServerTls, TlsSettings)> {
    let ca = TestCa::new("redis topologies test CA")?;
    // Cluster nodes present it to each other as a client certificate too.
    let server = ca.peer(&["127.0.0.1", "localhost"])?;
    let tls = RedisServerTls::new(ca.certificate_pem(), server.certificate_pem, server.key_pem);
    let trusting = TlsSettings {
        ca_cert: Some(ca.certificate_pem().to_owned()),
        ..TlsSettings::default()
    };
    Ok((tls, trusting))
}

/// Settings trusting a CA that signed nothing the servers present.
fn another_ca() -> anyhow::Result<TlsSettings> {
    let other = TestCa::new("another CA")?;
    Ok(TlsSettings {
        ca_cert: Some(other.certificate_pem().to_owned()),
        ..TlsSettings::default()
    })
}

/// A cluster on TLS ports only, with `tls-cluster yes`: the seed is `rediss://`, and the client
/// reaches every master over TLS with the CA from the settings; another CA is refused.
#[tokio::test]
async fn a_cluster_over_tls_reaches_every_master_with_the_ca_and_refuses_another()
-> anyhow::Result<()> {
    let (server_tls, trusting) = test_tls()?;
    let cluster = TestRedisCluster::start_tls(&server_tls).await?;
    assert!(cluster.url().starts_with("rediss://"), "{}", cluster.url());
    let pool = redis_topology_pool(
        &cluster.url(),
        &trusting,
        &RedisTopologySettings::new(RedisTopology::Cluster),
        &options(),
    )
    .await?;
    for i in 0..60 {
        let key = cluster.key(&format!("tls-{i}"));
        assert_eq!(set_get(&pool, &key, &i.to_string()).await?, i.to_string());
    }
    for master in cluster.master_urls() {
        let keys = cluster.count_keys_on(&master).await?;
        assert!(keys > 0, "{master} holds none of the 60 keys");
    }

    let refused = redis_topology_pool(
        &cluster.url(),
        &another_ca()?,
        &RedisTopologySettings::new(RedisTopology::Cluster),
        &options(),
    )
    .await;
    let Err(error) = refused else {
        anyhow::bail!("a cluster pool trusting another CA connected");
    };
    assert!(error.is_tls(), "{error}");
    Ok(())
}

/// Sentinels and data servers on TLS ports only: the client asks the sentinels over TLS and
/// reaches the master over TLS, and follows a failover; another CA is refused.
#[tokio::test]
async fn a_sentinel_set_up_over_tls_gives_the_master_over_tls_and_survives_a_failover()
-> anyhow::Result<()> {
    let (server_tls, trusting) = test_tls()?;
    let mut setup = TestRedisSentinel::start_tls(&server_tls).await?;
    assert!(setup.url().starts_with("rediss://"), "{}", setup.url());
    let settings = RedisTopologySettings::new(RedisTopology::Sentinel)
        .with_nodes(setup.nodes())
        .with_sentinel_master(SENTINEL_MASTER);
    let pool = redis_topology_pool(&setup.url(), &trusting, &settings, &options()).await?;
    assert_eq!(set_get(&pool, "before", "kept").await?, "kept");

    let refused = redis_topology_pool(&setup.url(), &another_ca()?, &settings, &options()).await;
    let Err(error) = refused else {
        anyhow::bail!("a sentinel pool trusting another CA connected");
    };
    assert!(error.is_tls(), "{error}");

    assert_eq!(
        replicas_in_sync(&pool).await?,
        1,
        "the replica follows the master over TLS"
    );
    let old = setup.kill_master()?;
    let new = setup.wait_for_new_master(old).await?;
    let deadline = tokio::time::Instant::now() + FAILOVER_LIMIT;
    loop {
        if let Ok(value) = set_get(&pool, "after", "x").await {
            assert_eq!(value, "x");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no write over TLS reached the new master on {new} within {FAILOVER_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&pool, "before").await?, "kept");
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
    assert_eq!(replicas_in_sync(&pool).await?, 1);

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
    assert_eq!(get(&pool, "before").await?, "kept");
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
