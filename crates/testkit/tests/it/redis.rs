//! `TestRedis` against the real Redis server.
#![cfg(feature = "redis")]

use deadpool_redis::redis;
use groundwork_testkit::TestRedis;

async fn keys_matching(url: &str, pattern: &str) -> anyhow::Result<Vec<String>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    Ok(redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await?)
}

#[tokio::test]
async fn keys_under_the_prefix_are_deleted_on_drop() -> anyhow::Result<()> {
    let test_redis = TestRedis::create().await?;
    let url = test_redis.url().to_owned();
    let prefix = test_redis.prefix().to_owned();
    assert!(prefix.starts_with("gw:test:") && prefix.ends_with(':'));
    let key = test_redis.key("greeting");
    assert_eq!(key, format!("{prefix}greeting"));

    let mut conn = test_redis.pool().get().await?;
    redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async::<()>(&mut conn)
        .await?;
    // More keys than one SCAN round trip returns, to exercise the cursor loop.
    let mut bulk = redis::pipe();
    for n in 0..1200 {
        bulk.cmd("SET")
            .arg(test_redis.key(&format!("bulk:{n}")))
            .arg(n)
            .ignore();
    }
    bulk.query_async::<()>(&mut conn).await?;
    let value: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    assert_eq!(value, "hello");
    drop(conn);
    assert_eq!(
        keys_matching(&url, &format!("{prefix}*")).await?.len(),
        1201
    );

    drop(test_redis);

    assert!(keys_matching(&url, &format!("{prefix}*")).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn keys_are_deleted_when_the_test_panics() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing_test = tokio::spawn(async move {
        let Ok(test_redis) = TestRedis::create().await else {
            return;
        };
        let Ok(mut conn) = test_redis.pool().get().await else {
            return;
        };
        let set = redis::cmd("SET")
            .arg(test_redis.key("k"))
            .arg("v")
            .query_async::<()>(&mut conn)
            .await;
        drop(conn);
        if set.is_ok() {
            let _ = tx.send((test_redis.url().to_owned(), test_redis.prefix().to_owned()));
        }
        panic!("simulated test failure");
    });

    assert!(failing_test.await.is_err_and(|err| err.is_panic()));
    let (url, prefix) = rx.recv()?;
    assert!(keys_matching(&url, &format!("{prefix}*")).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn explicit_cleanup_deletes_the_keys() -> anyhow::Result<()> {
    let test_redis = TestRedis::create().await?;
    let url = test_redis.url().to_owned();
    let prefix = test_redis.prefix().to_owned();
    let mut conn = test_redis.pool().get().await?;
    redis::cmd("SET")
        .arg(test_redis.key("k"))
        .arg("v")
        .query_async::<()>(&mut conn)
        .await?;
    drop(conn);

    test_redis.cleanup().await?;

    assert!(keys_matching(&url, &format!("{prefix}*")).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn concurrent_test_redis_prefixes_differ() -> anyhow::Result<()> {
    let (first, second) = tokio::try_join!(TestRedis::create(), TestRedis::create())?;
    assert_ne!(first.prefix(), second.prefix());
    assert_ne!(first.key("same"), second.key("same"));
    Ok(())
}
