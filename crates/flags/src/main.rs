//! `groundwork-flags`: inspect and change the platform's feature flags.
//!
//! ```text
//! groundwork-flags list
//! groundwork-flags create supplier.realtime.sync --description "push supplier updates"
//! groundwork-flags rollout supplier.realtime.sync 5
//! groundwork-flags enable supplier.realtime.sync
//! groundwork-flags eval supplier.realtime.sync tenant-1
//! groundwork-flags history supplier.realtime.sync
//! groundwork-flags rollback supplier.realtime.sync --to 42
//! groundwork-flags rollout supplier.realtime.sync 30 --if-revision 43
//! ```
//! A change with `--if-revision N` (the revision `history` shows first) is made only if the
//! flag is still at revision N, so no one else's change is lost.
//!
//! Exit codes: 0 done, 1 failed, 2 usage, 3 refused because the flag changed since it was read
//! (or exists already): read it again and retry.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use groundwork_flags::admin::{AdminError, Expect, FlagAdmin, FlagChange, FlagUpdate};
use groundwork_flags::{Flag, FlagSet};

#[derive(Debug, Parser)]
#[command(
    name = "groundwork-flags",
    version,
    about = "Inspect and change feature flags"
)]
struct Cli {
    /// PostgreSQL URL of the database holding `feature_flags`
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Who is making the change, recorded in the history (default: $USER)
    #[arg(
        long,
        env = "USER",
        hide_env_values = true,
        default_value = "groundwork-flags"
    )]
    by: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every flag
    List,
    /// Show one flag
    Get { name: String },
    /// Create a flag (disabled unless --enabled)
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        enabled: bool,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(0..=100))]
        rollout: i32,
    },
    /// Turn a flag on
    Enable {
        name: String,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Turn a flag off
    Disable {
        name: String,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Set the rollout percentage (0-100)
    Rollout {
        name: String,
        #[arg(value_parser = clap::value_parser!(i32).range(0..=100))]
        pct: i32,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Set the tenant whitelist (applies at 100% rollout); no tenants clears it
    Whitelist {
        name: String,
        tenants: Vec<String>,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Delete a flag
    Delete {
        name: String,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Show a flag's changes, newest first
    History { name: String },
    /// Restore a flag to its state right after a revision
    Rollback {
        name: String,
        #[arg(long)]
        to: i64,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Evaluate a flag for a tenant, with the reason
    Eval { name: String, tenant: String },
}

/// What a change expects to find: without `--if-revision`, whatever is there.
#[derive(Debug, Args)]
struct IfRevision {
    /// Change the flag only if it is still at this revision (the first line of `history`)
    #[arg(long, value_name = "REVISION")]
    if_revision: Option<i64>,
}

impl IfRevision {
    fn expect(&self) -> Expect {
        self.if_revision.map_or(Expect::Any, Expect::Revision)
    }
}

/// A write was refused to protect a concurrent change.
const EXIT_CONFLICT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error
                .downcast_ref::<AdminError>()
                .is_some_and(AdminError::is_conflict)
            {
                ExitCode::from(EXIT_CONFLICT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn print_flag(flag: &Flag) {
    let whitelist = flag
        .whitelist
        .as_ref()
        .map_or_else(|| "-".to_owned(), |w| w.join(","));
    println!(
        "{:<40} {:<8} {:>4}%  whitelist: {:<20} {}",
        flag.name,
        if flag.enabled { "enabled" } else { "disabled" },
        flag.rollout_pct,
        whitelist,
        flag.description.as_deref().unwrap_or("")
    );
}

/// `host:port` of a database URL, for messages: sqlx's connection errors do not name the server,
/// and the URL may hold a password.
fn server(url: &str) -> String {
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(options) => format!("{}:{}", options.get_host(), options.get_port()),
        Err(_) => "(unparseable URL)".to_owned(),
    }
}

fn print_change(change: &FlagChange) {
    let state = change.flag.as_ref().map_or_else(
        || "(deleted)".to_owned(),
        |f| format!("enabled={} rollout={}%", f.enabled, f.rollout_pct),
    );
    println!(
        "{:>8}  {}  {:<6}  {:<30}  by {}",
        change.revision,
        change.changed_at,
        change.op,
        state,
        change.changed_by.as_deref().unwrap_or("-")
    );
}

/// Makes one change and prints the flag as written.
async fn apply(
    admin: &FlagAdmin,
    name: &str,
    update: &FlagUpdate,
    expect: &IfRevision,
    by: &str,
) -> Result<()> {
    print_flag(&admin.update(name, update, expect.expect(), by).await?.flag);
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&cli.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the database at {} given by --database-url / DATABASE_URL",
                server(&cli.database_url)
            )
        })?;
    let admin = FlagAdmin::new(pool);
    let by = cli.by.as_str();
    match cli.command {
        Command::List => {
            for flag in admin.list().await? {
                print_flag(&flag);
            }
        }
        Command::Get { name } => print_flag(&admin.get(&name).await?),
        Command::Create {
            name,
            description,
            enabled,
            rollout,
        } => {
            let flag = Flag {
                enabled,
                rollout_pct: rollout,
                description,
                ..Flag::new(name)
            };
            admin.create(&flag, by).await?;
            print_flag(&flag);
        }
        Command::Enable { name, expect } => {
            let update = FlagUpdate {
                enabled: Some(true),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, by).await?;
        }
        Command::Disable { name, expect } => {
            let update = FlagUpdate {
                enabled: Some(false),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, by).await?;
        }
        Command::Rollout { name, pct, expect } => {
            let update = FlagUpdate {
                rollout_pct: Some(pct),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, by).await?;
        }
        Command::Whitelist {
            name,
            tenants,
            expect,
        } => {
            let update = FlagUpdate {
                whitelist: Some((!tenants.is_empty()).then_some(tenants)),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, by).await?;
        }
        Command::Delete { name, expect } => {
            admin.delete_if(&name, expect.expect(), by).await?;
            println!("deleted {name}");
        }
        Command::History { name } => {
            for change in admin.history(&name).await? {
                print_change(&change);
            }
        }
        Command::Rollback { name, to, expect } => {
            let item = admin.rollback_if(&name, to, expect.expect(), by).await?;
            print_flag(&item.flag);
        }
        Command::Eval { name, tenant } => {
            let set = FlagSet::new(admin.get(&name).await.map(|f| vec![f]).unwrap_or_default());
            let evaluation = groundwork_flags::Flags::new(set).evaluate(&name, &tenant);
            println!(
                "{name} for {tenant}: {} ({:?}, bucket {})",
                if evaluation.enabled { "on" } else { "off" },
                evaluation.reason,
                groundwork_flags::bucket(&tenant, &name)
            );
        }
    }
    Ok(())
}
