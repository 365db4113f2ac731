//! Through PgBouncer in transaction pooling mode (`cargo xtask infra up` starts one in front of
//! the test PostgreSQL): `LISTEN` never delivers, which is why instances behind it subscribe to
//! a relay's fan-out instead.

use std::time::Duration;

use anyhow::Result;
use groundwork_testkit::TestDatabase;
use sqlx::postgres::PgListener;

const CHANNEL: &str = "gw_pgbouncer_probe";

#[tokio::test]
async fn listen_through_pgbouncer_in_transaction_mode_never_delivers() -> Result<()> {
    let db = TestDatabase::create().await?;
    let mut direct = PgListener::connect(db.url()).await?;
    direct.listen(CHANNEL).await?;
    // Through PgBouncer, LISTEN itself succeeds: it runs in a transaction of its own on some
    // server connection, which goes back to the pool right after.
    let mut pooled = PgListener::connect(&db.pgbouncer_url()?).await?;
    pooled.listen(CHANNEL).await?;

    for attempt in 0..5 {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(attempt.to_string())
            .execute(db.pool())
            .await?;
    }
    // The control: the notifications were sent, and a direct listener receives every one.
    for attempt in 0..5 {
        let received = tokio::time::timeout(Duration::from_secs(5), direct.recv()).await??;
        assert_eq!(received.payload(), attempt.to_string());
    }
    let through_pgbouncer = tokio::time::timeout(Duration::from_secs(2), pooled.try_recv()).await;
    assert!(
        through_pgbouncer.is_err(),
        "a LISTEN through PgBouncer in transaction mode delivered {through_pgbouncer:?}; \
         is PGBOUNCER_URL a PgBouncer with pool_mode = transaction?"
    );
    Ok(())
}
