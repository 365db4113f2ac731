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
//! ```
//! Exit codes: 0 done, 1 failed, 2 usage.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use groundwork_flags::admin::FlagAdmin;
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
    Enable { name: String },
    /// Turn a flag off
    Disable { name: String },
    /// Set the rollout percentage (0-100)
    Rollout {
        name: String,
        #[arg(value_parser = clap::value_parser!(i32).range(0..=100))]
        pct: i32,
    },
    /// Set the tenant whitelist (applies at 100% rollout); no tenants clears it
    Whitelist { name: String, tenants: Vec<String> },
    /// Delete a flag
    Delete { name: String },
    /// Show a flag's changes, newest first
    History { name: String },
    /// Restore a flag to its state right after a revision
    Rollback {
        name: String,
        #[arg(long)]
        to: i64,
    },
    /// Evaluate a flag for a tenant, with the reason
    Eval { name: String, tenant: String },
}

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
            ExitCode::FAILURE
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
        Command::Enable { name } => {
            admin.set_enabled(&name, true, by).await?;
            print_flag(&admin.get(&name).await?);
        }
        Command::Disable { name } => {
            admin.set_enabled(&name, false, by).await?;
            print_flag(&admin.get(&name).await?);
        }
        Command::Rollout { name, pct } => {
            admin.set_rollout(&name, pct, by).await?;
            print_flag(&admin.get(&name).await?);
        }
        Command::Whitelist { name, tenants } => {
            let whitelist = (!tenants.is_empty()).then_some(tenants);
            admin.set_whitelist(&name, whitelist, by).await?;
            print_flag(&admin.get(&name).await?);
        }
        Command::Delete { name } => {
            admin.delete(&name, by).await?;
            println!("deleted {name}");
        }
        Command::History { name } => {
            for change in admin.history(&name).await? {
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
        }
        Command::Rollback { name, to } => {
            let flag = admin.rollback(&name, to, by).await?;
            print_flag(&flag);
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
