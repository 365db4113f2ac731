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
//! The connection arguments (`--database-url`, `--connect-timeout`), `--json` and the exit codes
//! (0 done, 1 failed, 2 usage, 3 refused because the flag changed since it was read or exists
//! already: read it again and retry) are groundwork-cli's, shared by every Groundwork tool.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use groundwork_cli::{ConnectArgs, Failure, OutputArgs};
use groundwork_flags::admin::{AdminError, Expect, FlagAdmin, FlagChange, FlagUpdate};
use groundwork_flags::{Flag, FlagSet};

#[derive(Debug, Parser)]
#[command(
    name = "groundwork-flags",
    version,
    about = "Inspect and change feature flags"
)]
struct Cli {
    /// The database holding `feature_flags`
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    output: OutputArgs,
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

fn main() -> ExitCode {
    groundwork_cli::main(run)
}

/// A write refused to protect another change exits with 3 (conflict); every other admin error
/// with 1.
fn admin_failure(error: AdminError) -> Failure {
    if error.is_conflict() {
        Failure::conflict(error)
    } else {
        Failure::failed(error)
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
    out: OutputArgs,
    by: &str,
) -> Result<(), Failure> {
    let item = admin
        .update(name, update, expect.expect(), by)
        .await
        .map_err(admin_failure)?;
    out.emit(&item, |item| print_flag(&item.flag))
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let pool = cli.connect.postgres_pool().await?;
    let admin = FlagAdmin::new(pool);
    let by = cli.by.as_str();
    let out = cli.output;
    match cli.command {
        Command::List => {
            let flags = admin.list().await.map_err(admin_failure)?;
            out.emit(&flags, |flags| flags.iter().for_each(print_flag))
        }
        Command::Get { name } => {
            let flag = admin.get(&name).await.map_err(admin_failure)?;
            out.emit(&flag, print_flag)
        }
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
            admin.create(&flag, by).await.map_err(admin_failure)?;
            out.emit(&flag, print_flag)
        }
        Command::Enable { name, expect } => {
            let update = FlagUpdate {
                enabled: Some(true),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, out, by).await
        }
        Command::Disable { name, expect } => {
            let update = FlagUpdate {
                enabled: Some(false),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, out, by).await
        }
        Command::Rollout { name, pct, expect } => {
            let update = FlagUpdate {
                rollout_pct: Some(pct),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, out, by).await
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
            apply(&admin, &name, &update, &expect, out, by).await
        }
        Command::Delete { name, expect } => {
            admin
                .delete_if(&name, expect.expect(), by)
                .await
                .map_err(admin_failure)?;
            out.emit(&serde_json::json!({ "deleted": name }), |_| {
                println!("deleted {name}");
            })
        }
        Command::History { name } => {
            let changes = admin.history(&name).await.map_err(admin_failure)?;
            out.emit(&changes, |changes| changes.iter().for_each(print_change))
        }
        Command::Rollback { name, to, expect } => {
            let item = admin
                .rollback_if(&name, to, expect.expect(), by)
                .await
                .map_err(admin_failure)?;
            out.emit(&item, |item| print_flag(&item.flag))
        }
        Command::Eval { name, tenant } => eval(&admin, &name, &tenant, out).await,
    }
}

/// Evaluates a flag for a tenant and prints the answer with its reason and bucket.
async fn eval(admin: &FlagAdmin, name: &str, tenant: &str, out: OutputArgs) -> Result<(), Failure> {
    let set = FlagSet::new(admin.get(name).await.map(|f| vec![f]).unwrap_or_default());
    let evaluation = groundwork_flags::Flags::new(set).evaluate(name, tenant);
    let bucket = groundwork_flags::bucket(tenant, name);
    let reason = format!("{:?}", evaluation.reason);
    let result = serde_json::json!({
        "flag": name,
        "tenant": tenant,
        "enabled": evaluation.enabled,
        "reason": reason,
        "bucket": bucket,
    });
    out.emit(&result, |_| {
        println!(
            "{name} for {tenant}: {} ({reason}, bucket {bucket})",
            if evaluation.enabled { "on" } else { "off" },
        );
    })
}
