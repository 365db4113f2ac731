//! `groundwork-live`: inspect and change the platform's `platform_config` values.
//!
//! ```text
//! groundwork-live --env production list
//! groundwork-live --env production get matching.algorithm.weights
//! groundwork-live --env production set order.expiry.minutes 30 --create --description "unpaid orders expire"
//! groundwork-live --env production set order.expiry.minutes 45 --if-revision 17
//! groundwork-live --env production set matching.algorithm.weights --value-file weights.json --force
//! groundwork-live --env production list --json
//! groundwork-live --env production history order.expiry.minutes
//! groundwork-live --env production rollback order.expiry.minutes --to 17 --if-revision 18
//! groundwork-live --env production delete order.expiry.minutes --if-revision 19
//! groundwork-live relay --transport nats://127.0.0.1:4222
//! ```
//! Values are JSON: `30`, `true`, `'"text"'`, `'{"price_weight": 0.4}'`.
//!
//! The connection arguments (`--database-url`, `--connect-timeout`), `--json` and the exit codes
//! (0 done, 1 failed, 2 usage, 3 refused because the key changed since it was read or exists
//! already: read it again and retry) are groundwork-cli's, shared by every Groundwork tool.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use groundwork_cli::{ConnectArgs, Failure, OutputArgs};
use groundwork_live::config::admin::{AdminError, ConfigAdmin, ConfigItem, Expect, NewValue};

#[derive(Debug, Parser)]
#[command(
    name = "groundwork-live",
    version,
    about = "Inspect and change platform_config values"
)]
struct Cli {
    /// The database holding `platform_config`
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The environment whose values to show or change, e.g. production, staging (not used by
    /// `relay`)
    #[arg(long, env = "APP_ENV")]
    env: Option<String>,
    /// Who is making the change, recorded in the history (default: $USER)
    #[arg(
        long,
        env = "USER",
        hide_env_values = true,
        default_value = "groundwork-live"
    )]
    by: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every key of the environment
    List,
    /// Show one key with its revision
    Get { key: String },
    /// Set a key's value (JSON); say what you expect to find
    Set {
        key: String,
        #[arg(
            help = r#"The value as JSON, e.g. 30, true, '"text"', '{"price_weight": 0.4}'"#,
            required_unless_present = "value_file",
            conflicts_with = "value_file"
        )]
        value: Option<String>,
        /// Read the value (JSON) from this file, or from stdin with `-`
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        expect: WriteExpectation,
    },
    /// Delete a key; services fall back to their defaults
    Delete {
        key: String,
        #[command(flatten)]
        expect: ChangeExpectation,
    },
    /// Show a key's changes, newest first
    History { key: String },
    /// Restore a key's value to what it was right after a revision
    Rollback {
        key: String,
        #[arg(long)]
        to: i64,
        #[command(flatten)]
        expect: ChangeExpectation,
    },
    /// Relay config and flag changes to NATS or Redis until stopped (SIGINT, SIGTERM); run two
    /// or more per database: one leads, the others take over
    Relay {
        /// Where to publish: a `nats://` (`tls://`) or `redis://` (`rediss://`) URL
        #[arg(long, env = "LIVE_TRANSPORT", hide_env_values = true)]
        transport: String,
        /// Subject prefix; the instances' `FeedOptions::namespace` must match
        #[arg(long, default_value = groundwork_live::DEFAULT_NAMESPACE)]
        namespace: String,
        /// NOTIFY channels to relay (repeat the option for several)
        #[arg(long = "channel", default_values_t = [groundwork_live::config::CHANNEL.to_owned(), FLAGS_CHANNEL.to_owned()])]
        channels: Vec<String>,
    },
}

/// `groundwork_flags::store::CHANNEL` (groundwork-live cannot depend on groundwork-flags).
const FLAGS_CHANNEL: &str = "groundwork_feature_flags";

/// What a write expects to find: one is required, so no change is lost by accident.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct WriteExpectation {
    /// Change the key only if it is still at this revision (from `get`)
    #[arg(long, value_name = "REVISION")]
    if_revision: Option<i64>,
    /// Create the key; refused if it exists
    #[arg(long)]
    create: bool,
    /// Write whatever is there (last writer wins)
    #[arg(long)]
    force: bool,
}

impl WriteExpectation {
    fn expect(&self) -> Expect {
        match (self.if_revision, self.create) {
            (Some(revision), _) => Expect::Revision(revision),
            (None, true) => Expect::Absent,
            (None, false) => Expect::Any,
        }
    }
}

/// What a change to an existing key expects to find.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ChangeExpectation {
    /// Change the key only if it is still at this revision (from `get`)
    #[arg(long, value_name = "REVISION")]
    if_revision: Option<i64>,
    /// Change whatever is there (last writer wins)
    #[arg(long)]
    force: bool,
}

impl ChangeExpectation {
    fn expect(&self) -> Expect {
        self.if_revision.map_or(Expect::Any, Expect::Revision)
    }
}

fn main() -> ExitCode {
    groundwork_cli::main(run)
}

/// A refused write exits with 3 (conflict); every other admin error with 1.
fn admin_failure(error: AdminError) -> Failure {
    if matches!(
        error,
        AdminError::Conflict { .. } | AdminError::Exists { .. }
    ) {
        Failure::conflict(error)
    } else {
        Failure::failed(error)
    }
}

fn print_item(item: &ConfigItem) {
    println!(
        "{:<40} rev {:<8} {}  by {} at {}{}",
        item.key,
        item.revision,
        item.value,
        item.updated_by.as_deref().unwrap_or("-"),
        item.updated_at.as_deref().unwrap_or("-"),
        item.description
            .as_deref()
            .map(|d| format!("  # {d}"))
            .unwrap_or_default()
    );
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let pool = cli.connect.postgres_pool().await?;
    if let Command::Relay {
        transport,
        namespace,
        channels,
    } = cli.command
    {
        return relay(pool, &transport, namespace, channels).await;
    }
    let admin = ConfigAdmin::new(pool);
    let env = cli.env.as_deref().ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--env (or APP_ENV) is required: the environment whose values to show or change"
        ))
    })?;
    let by = cli.by.as_str();
    let out = cli.output;
    match cli.command {
        Command::Relay { .. } => Ok(()),
        Command::List => {
            let items = admin.list(env).await.map_err(admin_failure)?;
            out.emit(&items, |items| items.iter().for_each(print_item))
        }
        Command::Get { key } => {
            let item = admin.get(env, &key).await.map_err(admin_failure)?;
            out.emit(&item, print_item)
        }
        Command::Set {
            key,
            value,
            value_file,
            description,
            expect,
        } => {
            let text = match (value, value_file) {
                (Some(value), _) => value,
                (None, Some(path)) => groundwork_cli::read_value(&path)?,
                (None, None) => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "give the value or --value-file FILE (`-` for stdin)"
                    )));
                }
            };
            let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                format!("the value for `{key}` is not JSON; quote text as '\"text\"'")
            })?;
            let new = NewValue {
                env,
                key: &key,
                value: &value,
                description: description.as_deref(),
            };
            let item = admin
                .set(&new, expect.expect(), by)
                .await
                .map_err(admin_failure)?;
            out.emit(&item, print_item)
        }
        Command::Delete { key, expect } => {
            admin
                .delete(env, &key, expect.expect(), by)
                .await
                .map_err(admin_failure)?;
            out.emit(&serde_json::json!({ "deleted": key, "env": env }), |_| {
                println!("deleted {key} from {env}");
            })
        }
        Command::History { key } => {
            let changes = admin.history(env, &key).await.map_err(admin_failure)?;
            out.emit(&changes, |changes| {
                for change in changes {
                    let value = change
                        .value
                        .as_ref()
                        .map_or_else(|| "(deleted)".to_owned(), ToString::to_string);
                    println!(
                        "{:>8}  {}  {:<6}  by {:<20}  {}",
                        change.revision,
                        change.changed_at,
                        change.op,
                        change.changed_by.as_deref().unwrap_or("-"),
                        value
                    );
                }
            })
        }
        Command::Rollback { key, to, expect } => {
            let item = admin
                .rollback(env, &key, to, expect.expect(), by)
                .await
                .map_err(admin_failure)?;
            out.emit(&item, print_item)
        }
    }
}

/// Runs a relay until SIGINT or SIGTERM, printing its role changes.
async fn relay(
    pool: sqlx::PgPool,
    transport: &str,
    namespace: String,
    channels: Vec<String>,
) -> Result<(), Failure> {
    use groundwork_live::{Relay, RelayOptions, RelayRole, Transport};
    use tokio::signal::unix::{SignalKind, signal};

    let transport = Transport::parse(transport)
        .context("--transport / LIVE_TRANSPORT")
        .map_err(Failure::usage)?;
    let options = RelayOptions::new(transport.clone())
        .namespace(namespace)
        .channels(channels);
    let relay = Relay::start(pool, options)?;
    let mut roles = relay.roles();
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    loop {
        let role = roles.borrow_and_update().clone();
        match role {
            RelayRole::Leader => eprintln!("relay: leading, publishing to {transport:?}"),
            RelayRole::Standby => eprintln!("relay: standby, waiting for the lock"),
            RelayRole::Starting(reason) => eprintln!("relay: not ready: {reason}"),
            _ => {}
        }
        tokio::select! {
            changed = roles.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    relay.shutdown().await;
    eprintln!("relay: stopped");
    Ok(())
}
