//! A service's path from configuration to a live connection: the quickstart's `Settings` are
//! loaded through groundwork-config from variables that point at isolated real servers, and the
//! URLs it hands back connect.

use anyhow::{Context, Result};
use groundwork_config::{ExposeSecret, Loader};
use groundwork_example_quickstart::Settings;
use groundwork_testkit::{TestDatabase, TestRedis};

fn settings_for(database_url: &str, redis_url: &str) -> Result<Settings> {
    Ok(Loader::new()
        .no_dotenv()
        .config_dir("/nonexistent")
        .vars([
            ("DATABASE_URL", database_url),
            ("REDIS_URL", redis_url),
            ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            ("JWT_SECRET", "integration-test-signing-key-0123456789"),
            (
                "ENCRYPTION_SECRET",
                "integration-test-encryption-key-012345",
            ),
        ])
        .load()?)
}

#[tokio::test]
async fn loaded_database_url_connects_to_the_configured_database() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let settings = settings_for(db.url(), redis.url())?;

    let pool = sqlx::PgPool::connect(settings.database_url.expose_secret())
        .await
        .with_context(|| format!("connecting to {}", settings.database_url))?;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await?;
    assert_eq!(name, db.name());
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn loaded_redis_url_reaches_the_test_prefix() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let settings = settings_for(db.url(), redis.url())?;

    let config = deadpool_redis::Config::from_url(settings.redis_url.expose_secret());
    let pool = config.create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let mut conn = pool.get().await?;
    let key = redis.key("greeting");
    deadpool_redis::redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async::<()>(&mut conn)
        .await?;
    let mut kit_conn = redis.pool().get().await?;
    let value: String = deadpool_redis::redis::cmd("GET")
        .arg(&key)
        .query_async(&mut kit_conn)
        .await?;
    assert_eq!(value, "hello");
    Ok(())
}
