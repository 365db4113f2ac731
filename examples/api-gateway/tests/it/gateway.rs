//! The api-gateway against real PostgreSQL, Redis and RabbitMQ: started in-process on
//! `127.0.0.1:0`, each test with its own database, key prefix and exchange.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use groundwork_config::Loader;
use groundwork_connect::RedisOptions;
use groundwork_example_api_gateway::{Gateway, ORDER_CREATED, OrderCreated, Settings};
use groundwork_service::{ServeOptions, Shutdown};
use groundwork_testkit::{TestAmqp, TestDatabase, TestRedis};
use lapin::options::BasicGetOptions;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

const SEED: &str = include_str!("../../../demo/seed.sql");

/// A running gateway and the resources it owns. Dropping it removes the resources.
struct TestGateway {
    address: std::net::SocketAddr,
    gateway: Gateway,
    shutdown: Shutdown,
    server: JoinHandle<std::io::Result<()>>,
    db: TestDatabase,
    amqp: TestAmqp,
    /// The gateway's orders exchange.
    exchange: String,
    /// A queue bound to the gateway's exchange for `order.created`.
    queue: String,
    redis: TestRedis,
}

impl TestGateway {
    async fn start() -> Result<Self> {
        Self::start_with(true, &[]).await
    }

    /// `bind_queue`: whether a queue receives `order.created`, as the order-worker's does;
    /// `vars`: more environment variables for the settings.
    async fn start_with(bind_queue: bool, vars: &[(&str, &str)]) -> Result<Self> {
        let db = TestDatabase::create().await?;
        let redis = TestRedis::create().await?;
        let amqp = TestAmqp::create().await?;
        let exchange = amqp.name("orders");
        let queue = amqp.name("order-created");

        let settings: Settings = Loader::new()
            .no_dotenv()
            .vars(
                [
                    ("DATABASE_URL", db.url()),
                    ("REDIS_URL", redis.url()),
                    ("RABBITMQ_URL", amqp.url()),
                    ("REDIS_KEY_PREFIX", redis.prefix()),
                    ("ORDERS_EXCHANGE", exchange.as_str()),
                    ("CONFIG_ENV", "test"),
                    ("DATABASE_POOL_SIZE", "4"),
                ]
                .into_iter()
                .filter(|(name, _)| !vars.iter().any(|(given, _)| given == name))
                .chain(vars.iter().copied()),
            )
            .load()?;
        let gateway = groundwork_example_api_gateway::start(settings).await?;

        if bind_queue {
            let channel = amqp.connection().create_channel().await?;
            amqp.bind_queue(&channel, &queue, &exchange, ORDER_CREATED)
                .await?;
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let server = tokio::spawn(groundwork_service_serve(
            listener,
            &gateway,
            shutdown.clone(),
        ));
        Ok(Self {
            address,
            gateway,
            shutdown,
            server,
            db,
            amqp,
            exchange,
            queue,
            redis,
        })
    }

    async fn seed(&self) -> Result<()> {
        // The demo seed writes the development environment; the tests read `test`.
        let seed = SEED.replace("'development'", "'test'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(seed))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Reply> {
        request(self.address, "GET", path, &[], "").await
    }

    async fn post_order(&self, headers: &[(&str, &str)], body: &str) -> Result<Reply> {
        request(self.address, "POST", "/v1/orders", headers, body).await
    }

    /// The `order.created` messages of every order committed so far, in order: once the outbox is
    /// empty, the relay has published them all and the broker confirmed each.
    async fn published(&self) -> Result<Vec<OrderCreated>> {
        let mut stats = self.gateway.outbox_stats();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.outbox_rows().await? > 0 {
            // Each published round changes the relay's stats.
            if tokio::time::timeout_at(deadline, stats.changed())
                .await
                .is_err()
            {
                bail!("the outbox was not emptied in time: {:?}", *stats.borrow());
            }
        }
        let channel = self.amqp.connection().create_channel().await?;
        let mut events = Vec::new();
        while let Some(message) = channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await?
        {
            events.push(serde_json::from_slice(&message.delivery.data)?);
        }
        Ok(events)
    }

    /// Events in the outbox, not yet published.
    async fn outbox_rows(&self) -> Result<i64> {
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM groundwork_outbox")
            .fetch_one(self.db.pool())
            .await?;
        Ok(rows)
    }

    /// Waits until `check` holds for the served answer, re-checking after every reload of the
    /// config or flags table (no sleeping).
    async fn until(&self, what: &str, check: impl AsyncFn() -> Result<bool>) -> Result<()> {
        let mut config = self.gateway.config_feed().generations();
        let mut flags = self.gateway.flags_feed().generations();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check().await? {
            let changed = async {
                tokio::select! {
                    _ = config.changed() => {}
                    _ = flags.changed() => {}
                }
            };
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                bail!("timed out waiting until {what}");
            }
        }
        Ok(())
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.trigger();
        self.server.await??;
        self.gateway.shutdown().await;
        Ok(())
    }
}

fn groundwork_service_serve(
    listener: tokio::net::TcpListener,
    gateway: &Gateway,
    shutdown: Shutdown,
) -> impl Future<Output = std::io::Result<()>> + use<> {
    let router = gateway.router.clone();
    let health = gateway.health.clone();
    let options = ServeOptions {
        drain_delay: Duration::ZERO,
        ..gateway.serve_options()
    };
    async move { groundwork_service::serve(listener, router, &health, shutdown, options).await }
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {}", self.body))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection, read to the end (`Connection: close`).
pub(crate) async fn request(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Reply> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .context("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn set_config(db: &TestDatabase, key: &str, value: &Value) -> Result<()> {
    sqlx::query(
        "INSERT INTO platform_config (key, value, env) VALUES ($1, $2, 'test')
         ON CONFLICT (env, key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(value)
    .execute(db.pool())
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ready_once_started_and_liveness_answers() -> Result<()> {
    let gateway = TestGateway::start().await?;
    let ready = gateway.get("/health/ready").await?;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(gateway.get("/health").await?.status, 200);
    assert_eq!(gateway.get("/health/live").await?.status, 200);
    assert_eq!(gateway.get("/health/database").await?.status, 200);
    assert_eq!(gateway.get("/health/redis").await?.status, 200);
    assert_eq!(gateway.get("/health/rabbitmq").await?.status, 200);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_weights_follow_platform_config_without_restart() -> Result<()> {
    let gateway = TestGateway::start().await?;
    let unset = gateway.get("/v1/matching/weights").await?;
    assert_eq!(unset.status, 404, "{}", unset.body);
    assert!(
        unset.json()?["error"]
            .as_str()
            .is_some_and(|e| e.contains("matching.algorithm.weights"))
    );

    gateway.seed().await?;
    let seeded = json!({"price_weight":0.4,"rating_weight":0.3,"availability_weight":0.2,"supplier_reliability_weight":0.1});
    gateway
        .until("the seeded weights are served", async || {
            let reply = gateway.get("/v1/matching/weights").await?;
            Ok(reply.status == 200 && reply.json()? == seeded)
        })
        .await?;

    let changed = json!({"price_weight":0.5,"rating_weight":0.2,"availability_weight":0.2,"supplier_reliability_weight":0.1});
    set_config(&gateway.db, "matching.algorithm.weights", &changed).await?;
    gateway
        .until("the changed weights are served", async || {
            Ok(gateway.get("/v1/matching/weights").await?.json()? == changed)
        })
        .await?;
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_lists_every_flag_for_the_tenant_and_follows_the_table() -> Result<()> {
    let gateway = TestGateway::start().await?;
    gateway.seed().await?;
    let all_off = json!({"tenant":"tenant-1","flags":{
        "admin.v2":false,"matching.ai.boost":false,"risk.auto.reject":false,
        "settlement.auto.reconcile":false,"supplier.realtime.sync":false}});
    gateway
        .until("the five seed flags are served, all off", async || {
            Ok(gateway.get("/v1/features?tenant=tenant-1").await?.json()? == all_off)
        })
        .await?;

    sqlx::query("UPDATE feature_flags SET enabled = true WHERE name = 'admin.v2'")
        .execute(gateway.db.pool())
        .await?;
    gateway
        .until("admin.v2 is on", async || {
            let reply = gateway.get("/v1/features?tenant=tenant-1").await?.json()?;
            Ok(reply["flags"]["admin.v2"] == json!(true))
        })
        .await?;

    for path in [
        "/v1/features",
        "/v1/features?tenant=",
        "/v1/features?other=x",
    ] {
        let reply = gateway.get(path).await?;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert!(
            reply.json()?["error"]
                .as_str()
                .is_some_and(|e| e.contains("tenant"))
        );
    }
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_stored_published_and_answered_201() -> Result<()> {
    let gateway = TestGateway::start().await?;
    let reply = gateway
        .post_order(
            &[("Content-Type", "application/json")],
            r#"{"tenant":"tenant-1","amount":120.5}"#,
        )
        .await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = reply.json()?;
    let id = body["id"].as_i64().context("no id")?;
    assert_eq!(body["tenant"], "tenant-1");
    assert_eq!(body["status"], "created");
    assert_eq!(
        reply.header("location"),
        Some(format!("/v1/orders/{id}").as_str())
    );

    let (tenant, amount, status): (String, f64, String) =
        sqlx::query_as("SELECT tenant, amount::float8, status FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(gateway.db.pool())
            .await?;
    assert_eq!((tenant.as_str(), status.as_str()), ("tenant-1", "created"));
    assert!((amount - 120.5).abs() < 1e-9);

    let published = gateway.published().await?;
    assert_eq!(
        published,
        vec![OrderCreated {
            order_id: id,
            tenant: "tenant-1".into(),
            amount: 120.5
        }]
    );
    gateway.stop().await
}

static LONG_TENANT_ORDER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!(r#"{{"tenant":"{}","amount":1}}"#, "t".repeat(101)));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_are_400_with_a_message_never_500() -> Result<()> {
    /// Request headers, body, and a part of the expected message.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let gateway = TestGateway::start().await?;
    let cases: &[Case<'_>] = &[
        (&[], "", "empty"),
        (&[], "{not json", "not a valid order"),
        (&[], r#"{"tenant":"tenant-1"}"#, "missing field `amount`"),
        (&[], r#"{"amount":12}"#, "missing field `tenant`"),
        (
            &[],
            r#"{"tenant":"tenant-1","amount":"12"}"#,
            "not a valid order",
        ),
        (&[], r#"{"tenant":"tenant-1","amount":-3}"#, "positive"),
        (
            &[],
            r#"{"tenant":"tenant-1","amount":1.001}"#,
            "two decimal",
        ),
        (&[], r#"{"tenant":"","amount":1}"#, "tenant"),
        (&[], "[1,2]", "JSON object"),
        // An array with the fields in order is still not an order.
        (&[], r#"["arr",2]"#, "JSON object"),
        // Positive, but zero once stored with two decimals.
        (&[], r#"{"tenant":"n","amount":1e-9}"#, "two decimal"),
        (&[], r#"{"tenant":"n","amount":5e-324}"#, "two decimal"),
        (
            &[],
            r#"{"tenant":"a\u0000b","amount":1}"#,
            "control character",
        ),
        (&[], r#"{"tenant":"a\nb","amount":1}"#, "control character"),
        (&[], r#"{"tenant":" pad ","amount":1}"#, "whitespace"),
        (&[], r#"{"tenant":"  ","amount":1}"#, "tenant"),
        (&[], &LONG_TENANT_ORDER, "100 characters"),
        (
            &[("Idempotency-Key", "")],
            r#"{"tenant":"t","amount":1}"#,
            "Idempotency-Key",
        ),
    ];
    // Every case is tried before failing, so a failure lists all the wrong answers.
    let mut wrong = Vec::new();
    for (headers, body, expected) in cases {
        let reply = gateway.post_order(headers, body).await?;
        let message = reply
            .json()
            .ok()
            .and_then(|reply| reply["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if reply.status != 400 || !message.contains(expected) {
            wrong.push(format!(
                "{body:.60}: {} {:.200} (expected 400 with {expected:?})",
                reply.status, reply.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
        .fetch_one(gateway.db.pool())
        .await?;
    assert_eq!(count, 0);
    assert!(gateway.published().await?.is_empty());
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_flag_rejects_orders_over_the_hot_reload_threshold_with_422() -> Result<()> {
    let gateway = TestGateway::start().await?;
    gateway.seed().await?;
    sqlx::query(
        "UPDATE feature_flags SET enabled = true, whitelist = ARRAY['tenant-risky'] WHERE name = 'risk.auto.reject'",
    )
    .execute(gateway.db.pool())
    .await?;
    set_config(&gateway.db, "risk.auto.reject.threshold", &json!(100)).await?;
    gateway
        .until("the flag and threshold are loaded", async || {
            let flags = gateway
                .get("/v1/features?tenant=tenant-risky")
                .await?
                .json()?;
            Ok(flags["flags"]["risk.auto.reject"] == json!(true)
                && gateway.gateway.config.value("risk.auto.reject.threshold") == Some(json!(100)))
        })
        .await?;

    let rejected = gateway
        .post_order(&[], r#"{"tenant":"tenant-risky","amount":150}"#)
        .await?;
    assert_eq!(rejected.status, 422, "{}", rejected.body);
    assert!(
        rejected.json()?["error"]
            .as_str()
            .is_some_and(|e| e.contains("risk"))
    );
    let under = gateway
        .post_order(&[], r#"{"tenant":"tenant-risky","amount":50}"#)
        .await?;
    assert_eq!(under.status, 201, "{}", under.body);
    let other_tenant = gateway
        .post_order(&[], r#"{"tenant":"tenant-1","amount":150}"#)
        .await?;
    assert_eq!(other_tenant.status, 201, "{}", other_tenant.body);

    // Raising the threshold at run time lets the same order through, without a restart.
    set_config(&gateway.db, "risk.auto.reject.threshold", &json!(1000)).await?;
    gateway
        .until("the new threshold is loaded", async || {
            Ok(gateway.gateway.config.value("risk.auto.reject.threshold") == Some(json!(1000)))
        })
        .await?;
    let now_accepted = gateway
        .post_order(&[], r#"{"tenant":"tenant-risky","amount":150}"#)
        .await?;
    assert_eq!(now_accepted.status, 201, "{}", now_accepted.body);

    assert_eq!(gateway.published().await?.len(), 3);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_replays_the_first_answer() -> Result<()> {
    let gateway = TestGateway::start().await?;
    let headers = [("Idempotency-Key", "order-abc-1")];
    let body = r#"{"tenant":"tenant-1","amount":20}"#;
    let first = gateway.post_order(&headers, body).await?;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = gateway.post_order(&headers, body).await?;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(first.json()?["id"], second.json()?["id"]);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));

    let reused = gateway
        .post_order(&headers, r#"{"tenant":"tenant-1","amount":21}"#)
        .await?;
    assert_eq!(reused.status, 422, "{}", reused.body);

    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
        .fetch_one(gateway.db.pool())
        .await?;
    assert_eq!(count, 1);
    assert_eq!(gateway.published().await?.len(), 1);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_event_no_queue_receives_yet_is_stored_and_its_event_waits() -> Result<()> {
    let gateway = TestGateway::start_with(false, &[]).await?;
    let reply = gateway
        .post_order(
            &[("Idempotency-Key", "k-1")],
            r#"{"tenant":"tenant-1","amount":5}"#,
        )
        .await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()?["id"].as_i64().context("no id")?;

    // The broker returns the unroutable event; it stays in the outbox, never dropped.
    let mut stats = gateway.gateway.outbox_stats();
    tokio::time::timeout(
        Duration::from_secs(30),
        stats.wait_for(|stats| stats.refused >= 1),
    )
    .await
    .context("the relay never tried the event")??;
    assert_eq!(gateway.outbox_rows().await?, 1);

    // Once a queue is bound (the order-worker's first start), the relay's retry delivers it.
    let channel = gateway.amqp.connection().create_channel().await?;
    gateway
        .amqp
        .bind_queue(&channel, &gateway.queue, &gateway.exchange, ORDER_CREATED)
        .await?;
    let published = gateway.published().await?;
    assert_eq!(
        published
            .iter()
            .map(|event| event.order_id)
            .collect::<Vec<_>>(),
        [id]
    );
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_on_shutdown() -> Result<()> {
    let gateway = TestGateway::start().await?;
    assert_eq!(gateway.get("/health").await?.status, 200);
    gateway.gateway.health.begin_shutdown();
    let reply = gateway.get("/health").await?;
    ensure!(
        reply.status == 503,
        "readiness after shutdown began: {}",
        reply.status
    );
    assert_eq!(gateway.get("/livez").await?.status, 200);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_and_orders_accept_and_refuse_the_same_tenants() -> Result<()> {
    let gateway = TestGateway::start().await?;
    // 100 characters but 200 bytes: the limit counts characters, as the `orders` column does.
    let accented = "é".repeat(100);
    let order = gateway
        .post_order(&[], &json!({"tenant": accented, "amount": 1}).to_string())
        .await?;
    assert_eq!(order.status, 201, "{}", order.body);
    assert_eq!(order.json()?["tenant"], json!(accented));
    let query: String = url::form_urlencoded::byte_serialize(accented.as_bytes()).collect();
    let features = gateway.get(&format!("/v1/features?tenant={query}")).await?;
    assert_eq!(features.status, 200, "{}", features.body);

    let long = "t".repeat(60_000);
    for (tenant, expected) in [
        (long.as_str(), "100 characters"),
        ("a%00b", "control character"),
        ("%20pad%20", "whitespace"),
    ] {
        let reply = gateway
            .get(&format!("/v1/features?tenant={tenant}"))
            .await?;
        assert_eq!(reply.status, 400, "{tenant:.20}: {:.200}", reply.body);
        let message = reply.json()?["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(message.contains(expected), "{message:.200}");
        assert!(
            message.len() < 300,
            "the tenant is not echoed: {message:.200}"
        );
    }
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_of_different_tenants_never_collide() -> Result<()> {
    let gateway = TestGateway::start().await?;
    // Joined with `:`, both would be `acme:k1:x`.
    let first = gateway
        .post_order(
            &[("Idempotency-Key", "k1:x")],
            r#"{"tenant":"acme","amount":10}"#,
        )
        .await?;
    assert_eq!(first.status, 201, "{}", first.body);
    let second = gateway
        .post_order(
            &[("Idempotency-Key", "x")],
            r#"{"tenant":"acme:k1","amount":10}"#,
        )
        .await?;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.header("idempotent-replayed"), None);
    assert_ne!(first.json()?["id"], second.json()?["id"]);
    assert_eq!(second.json()?["tenant"], "acme:k1");
    // Each key still replays its own order.
    let again = gateway
        .post_order(
            &[("Idempotency-Key", "x")],
            r#"{"tenant":"acme:k1","amount":10}"#,
        )
        .await?;
    assert_eq!(again.json()?["id"], second.json()?["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_is_a_json_404_counted_on_metrics_without_its_path() -> Result<()> {
    let gateway = TestGateway::start().await?;
    for path in ["/wp-admin.php", "/.env"] {
        let reply = gateway.get(path).await?;
        assert_eq!(reply.status, 404, "{}", reply.body);
        let body: Value = serde_json::from_str(&reply.body)?;
        assert!(body["error"].is_string(), "{body}");
    }
    let metrics = gateway.get("/metrics").await?;
    assert!(
        metrics.body.contains(
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404"} 2"#
        ),
        "{}",
        metrics.body
    );
    assert!(!metrics.body.contains("wp-admin"), "{}", metrics.body);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_limits_come_from_the_settings_and_are_counted_on_metrics() -> Result<()> {
    let gateway = TestGateway::start_with(true, &[("HTTP_MAX_BODY_BYTES", "2048")]).await?;
    // Only the head: a body over the limit is refused from its declared length, and a body the
    // server will not read could reset the connection before the answer is read.
    let mut stream = tokio::net::TcpStream::connect(gateway.address).await?;
    stream
        .write_all(b"POST /v1/orders HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n\r\n")
        .await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert!(
        reply.contains("content-type: application/json")
            && reply
                .contains(r#"{"error":"the request body is larger than the limit of 2048 bytes"}"#),
        "{reply}"
    );
    let metrics = gateway.get("/metrics").await?;
    assert!(
        metrics
            .body
            .contains("\nhttp_server_shed_requests_total 0\n")
            && metrics
                .body
                .contains("\nhttp_server_timed_out_requests_total 0\n"),
        "{}",
        metrics.body
    );
    gateway.stop().await
}

/// The gateway reaches Redis (`rediss://`) and RabbitMQ (`amqps://`) over TLS, trusting the test
/// CA given as `*_FILE` variables, and takes an order end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_through_redis_and_rabbitmq_over_tls() -> Result<()> {
    let tls = groundwork_testkit::TestTls::discover()?;
    let ca_file = tls.ca_cert_path.display().to_string();
    let gateway = TestGateway::start_with(
        true,
        &[
            ("REDIS_URL", tls.redis_url.as_str()),
            ("REDIS_TLS_CA_CERT_FILE", ca_file.as_str()),
            ("RABBITMQ_URL", tls.amqp_url.as_str()),
            ("RABBITMQ_TLS_CA_CERT_FILE", ca_file.as_str()),
        ],
    )
    .await?;
    let order = || {
        gateway.post_order(
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "tls-order-1"),
            ],
            r#"{"tenant":"tenant-tls","amount":42}"#,
        )
    };
    let reply = order().await?;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let published = gateway.published().await?;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].tenant, "tenant-tls");
    // The idempotency key went to the TLS Redis: a repeat replays the first answer.
    let again = order().await?;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body, reply.body);
    assert_eq!(gateway.published().await?.len(), 0, "no second event");

    // The test kit cleans the plain Redis; this test's keys on the TLS one are removed here.
    let ca = groundwork_connect::TlsSettings {
        ca_cert: Some(tls.ca_cert.clone()),
        ..groundwork_connect::TlsSettings::default()
    };
    let pool =
        groundwork_connect::redis_pool(&tls.redis_url, &ca, &RedisOptions::default()).await?;
    let mut connection = pool.get().await?;
    let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
        .arg(format!("{}*", gateway.redis.prefix()))
        .query_async(&mut connection)
        .await?;
    assert!(
        !keys.is_empty(),
        "the idempotency key was stored on the TLS Redis"
    );
    let () = deadpool_redis::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await?;
    gateway.stop().await
}

/// Without the CA the gateway refuses to start, naming the server and the TLS reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_gateway_does_not_start_over_tls_and_says_why() -> Result<()> {
    let tls = groundwork_testkit::TestTls::discover()?;
    let started = TestGateway::start_with(true, &[("REDIS_URL", tls.redis_url.as_str())]).await;
    let error = started
        .err()
        .ok_or_else(|| anyhow::anyhow!("the gateway started without trusting the server"))?;
    let text = format!("{error:#}");
    assert!(
        text.contains("cannot connect to Redis at 127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("TLS: the certificate is not signed by a trusted CA"),
        "{text}"
    );
    Ok(())
}

/// A burst of orders from concurrent clients, taken by the real order-worker: every event the
/// worker receives names an order that is already committed, so not one delivery fails with
/// "does not exist (yet)" and is retried, and each order is processed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_burst_of_orders_every_first_delivery_finds_its_order_committed() -> Result<()> {
    const CLIENTS: usize = 12;
    const ORDERS_PER_CLIENT: usize = 25;
    let gateway = TestGateway::start_with(false, &[("DATABASE_POOL_SIZE", "8")]).await?;
    let amqp = &gateway.amqp;
    let worker_settings: groundwork_example_order_worker::Settings = Loader::new()
        .no_dotenv()
        .vars([
            ("DATABASE_URL", gateway.db.url().to_owned()),
            ("RABBITMQ_URL", amqp.url().to_owned()),
            ("ORDERS_EXCHANGE", gateway.exchange.clone()),
            ("QUEUE", amqp.name("worker.order-created")),
            ("DEAD_LETTER_EXCHANGE", amqp.name("worker.dlx")),
            ("DEAD_LETTER_QUEUE", amqp.name("worker.dlq")),
            ("ANALYTICS_EXCHANGE", amqp.name("analytics")),
            ("PREFETCH", "16".to_owned()),
            ("RETRY_BACKOFF_MS", "10".to_owned()),
        ])
        .load()?;
    let worker_shutdown = Shutdown::new();
    let worker =
        groundwork_example_order_worker::start(worker_settings, worker_shutdown.clone()).await?;

    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let address = gateway.address;
        clients.spawn(async move {
            let mut statuses = Vec::new();
            for order in 0..ORDERS_PER_CLIENT {
                let body = format!(r#"{{"tenant":"tenant-{client}","amount":{}}}"#, order + 1);
                let reply = request(address, "POST", "/v1/orders", &[], &body).await?;
                statuses.push(reply.status);
            }
            anyhow::Ok(statuses)
        });
    }
    let mut created = 0;
    while let Some(statuses) = clients.join_next().await {
        for status in statuses?? {
            ensure!(status == 201, "an order was answered {status}");
            created += 1;
        }
    }

    let mut stats = worker.stats();
    let seen = tokio::time::timeout(
        Duration::from_mins(1),
        stats.wait_for(|stats| stats.processed + stats.retried + stats.dead_lettered >= created),
    )
    .await
    .context("the worker did not process the burst in time")??
    .to_owned();
    assert_eq!(
        (
            seen.processed,
            seen.retried,
            seen.dead_lettered,
            seen.duplicates
        ),
        (created, 0, 0, 0),
        "first deliveries of orders not visible yet, or events published twice: {seen:?}"
    );
    let (processed,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM orders WHERE status = 'processed'")
            .fetch_one(gateway.db.pool())
            .await?;
    assert_eq!(u64::try_from(processed)?, created);

    worker_shutdown.trigger();
    worker.shutdown().await?;
    gateway.stop().await
}
