//! A server that does not answer is a clear error, never a skipped test, and never leaks the
//! password from the URL.
#![cfg(any(
    feature = "postgres",
    feature = "redis",
    feature = "amqp",
    feature = "clickhouse",
    feature = "s3"
))]

use groundwork_testkit::TestkitError;

fn assert_explains_unreachable(
    err: &TestkitError,
    shown_url: &str,
    env_var: &str,
) -> anyhow::Result<()> {
    let message = err.to_string();
    let debug = format!("{err:?}");
    anyhow::ensure!(
        matches!(err, TestkitError::Unreachable { .. }),
        "expected Unreachable, got {debug}"
    );
    anyhow::ensure!(message.contains(shown_url), "url missing in: {message}");
    anyhow::ensure!(
        message.contains("`cargo xtask infra up`"),
        "command missing in: {message}"
    );
    anyhow::ensure!(message.contains(env_var), "variable missing in: {message}");
    anyhow::ensure!(!message.contains("s3cret"), "password leaked in: {message}");
    anyhow::ensure!(!debug.contains("s3cret"), "password leaked in: {debug}");
    Ok(())
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn unreachable_postgres_error_names_redacted_url_and_infra_command() -> anyhow::Result<()> {
    let Err(err) = groundwork_testkit::TestDatabase::create_on(
        "postgres://postgres:s3cret@127.0.0.1:1/postgres",
    )
    .await
    else {
        anyhow::bail!("a database was created on a dead port");
    };
    assert_explains_unreachable(
        &err,
        "postgres://postgres:***@127.0.0.1:1/postgres",
        "DATABASE_URL",
    )
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_password_given_as_a_query_parameter_is_masked_too() -> anyhow::Result<()> {
    let Err(err) = groundwork_testkit::TestDatabase::create_on(
        "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&password=s3cret",
    )
    .await
    else {
        anyhow::bail!("a database was created on a dead port");
    };
    assert_explains_unreachable(
        &err,
        "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&password=***",
        "DATABASE_URL",
    )
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn unreachable_redis_error_names_redacted_url_and_infra_command() -> anyhow::Result<()> {
    let Err(err) = groundwork_testkit::TestRedis::create_on("redis://:s3cret@127.0.0.1:1").await
    else {
        anyhow::bail!("connected to a dead port");
    };
    assert_explains_unreachable(&err, "redis://:***@127.0.0.1:1", "REDIS_URL")
}

#[cfg(feature = "amqp")]
#[tokio::test]
async fn unreachable_rabbitmq_error_names_redacted_url_and_infra_command() -> anyhow::Result<()> {
    let Err(err) =
        groundwork_testkit::TestAmqp::create_on("amqp://guest:s3cret@127.0.0.1:1/%2f").await
    else {
        anyhow::bail!("connected to a dead port");
    };
    assert_explains_unreachable(&err, "amqp://guest:***@127.0.0.1:1/%2f", "RABBITMQ_URL")
}

#[cfg(feature = "clickhouse")]
#[tokio::test]
async fn unreachable_clickhouse_error_names_redacted_url_and_infra_command() -> anyhow::Result<()> {
    let Err(err) =
        groundwork_testkit::TestClickHouse::create_on("http://default:s3cret@127.0.0.1:1").await
    else {
        anyhow::bail!("a database was created on a dead port");
    };
    assert_explains_unreachable(&err, "http://default:***@127.0.0.1:1", "CLICKHOUSE_URL")
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn unreachable_s3_error_names_url_and_infra_command() -> anyhow::Result<()> {
    let Err(err) = groundwork_testkit::TestBucket::create_on("http://127.0.0.1:1").await else {
        anyhow::bail!("a bucket was created on a dead port");
    };
    assert_explains_unreachable(&err, "http://127.0.0.1:1", "S3_ENDPOINT")
}
