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
//! groundwork-flags variants checkout.button blue=50 green=50 --payload 'blue={"color":"#00f"}'
//! groundwork-flags rules checkout.button 'plan in gold,platinum' 'app_version semver_gte 2.1.0'
//! groundwork-flags eval checkout.button tenant-1 --attr plan=gold --attr app_version=2.4.1
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
use groundwork_flags::admin::{
    AdminError, Expect, FlagAdmin, FlagChange, FlagUpdate, parse_rules, parse_variants,
};
use groundwork_flags::{Attribute, Context as FlagContext, Flag, FlagSet, RuleValue};

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
    /// Set the variants, NAME=WEIGHT each, weights adding up to 100; none removes them
    Variants {
        name: String,
        /// `NAME=WEIGHT`, such as `blue=50`
        variants: Vec<String>,
        /// A variant's JSON payload, `VARIANT=JSON` (repeatable)
        #[arg(long = "payload", value_name = "VARIANT=JSON")]
        payloads: Vec<String>,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Set the context rules, 'ATTRIBUTE OPERATOR VALUE' each, all of which must hold; none
    /// removes them. Operators: `in`, `not_in` (comma-separated values), `eq`, `lt`, `lte`, `gt`,
    /// `gte` (or `<` `<=` `>` `>=`), `semver_eq`, `semver_lt`, `semver_lte`, `semver_gt`,
    /// `semver_gte`
    Rules {
        name: String,
        /// `ATTRIBUTE OPERATOR VALUE`, such as `plan in gold,platinum`
        rules: Vec<String>,
        #[command(flatten)]
        expect: IfRevision,
    },
    /// Evaluate a flag for a tenant, with the reason and the variant
    Eval {
        name: String,
        tenant: String,
        /// A context attribute for rules, `KEY=VALUE` (a number, true/false, or a string)
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attributes: Vec<String>,
    },
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
    if !flag.variants.is_empty() {
        let variants: Vec<String> = flag
            .variants
            .iter()
            .map(|v| {
                let payload = if v.payload.is_some() { "+payload" } else { "" };
                format!("{}={}{payload}", v.name, v.weight)
            })
            .collect();
        println!("{:<40} variants: {}", "", variants.join(" "));
    }
    for rule in &flag.rules {
        let values: Vec<String> = rule
            .values
            .iter()
            .map(|v| match v {
                RuleValue::String(s) => s.clone(),
                RuleValue::Number(n) => n.to_string(),
                RuleValue::Bool(b) => b.to_string(),
            })
            .collect();
        println!(
            "{:<40} rule: {} {} {}",
            "",
            rule.attribute,
            rule.operator,
            values.join(",")
        );
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
    out: OutputArgs,
    by: &str,
) -> Result<(), Failure> {
    let item = admin
        .update(name, update, expect.expect(), by)
        .await
        .map_err(admin_failure)?;
    out.emit(&item, |item| print_flag(&item.flag))
}

// One short arm per command: splitting the dispatch would only move the match elsewhere.
#[allow(clippy::too_many_lines)]
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
        Command::Variants {
            name,
            variants,
            payloads,
            expect,
        } => {
            let update = FlagUpdate {
                variants: Some(
                    parse_variants(&name, &variants, &payloads).map_err(Failure::failed)?,
                ),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, out, by).await
        }
        Command::Rules {
            name,
            rules,
            expect,
        } => {
            let update = FlagUpdate {
                rules: Some(parse_rules(&name, &rules).map_err(Failure::failed)?),
                ..FlagUpdate::default()
            };
            apply(&admin, &name, &update, &expect, out, by).await
        }
        Command::Eval {
            name,
            tenant,
            attributes,
        } => eval(&admin, &name, &tenant, &attributes, out).await,
    }
}

/// Evaluates a flag for a tenant with context attributes (`KEY=VALUE`) and prints the answer
/// with its reason, bucket and variant.
async fn eval(
    admin: &FlagAdmin,
    name: &str,
    tenant: &str,
    attributes: &[String],
    out: OutputArgs,
) -> Result<(), Failure> {
    let attributes = attributes
        .iter()
        .map(|spec| attribute(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let set = FlagSet::new(admin.get(name).await.map(|f| vec![f]).unwrap_or_default());
    let context = FlagContext::new(tenant).with_attributes(&attributes);
    let resolved = groundwork_flags::Flags::new(set).resolve(name, &context);
    let bucket = groundwork_flags::bucket(tenant, name);
    let reason = format!("{:?}", resolved.reason);
    let has_variants = resolved.flag().is_some_and(|f| !f.variants.is_empty());
    let point = has_variants.then(|| groundwork_flags::variant_point(tenant, name));
    let variant = resolved.variant_name();
    let result = serde_json::json!({
        "flag": name,
        "tenant": tenant,
        "enabled": resolved.enabled,
        "reason": reason,
        "bucket": bucket,
        "variant": variant,
        "variant_point": point,
    });
    out.emit(&result, |_| {
        let variant = point.map_or_else(String::new, |point| {
            format!(", variant {variant} at point {point}")
        });
        println!(
            "{name} for {tenant}: {} ({reason}, bucket {bucket}{variant})",
            if resolved.enabled { "on" } else { "off" },
        );
    })
}

/// `KEY=VALUE` as an attribute: a number, `true`/`false`, or else a string.
fn attribute(spec: &str) -> Result<(&str, Attribute<'_>), Failure> {
    let (key, value) = spec.split_once('=').ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "--attr {spec:?} is not KEY=VALUE, such as plan=gold"
        ))
    })?;
    let value = match value {
        "true" => Attribute::Bool(true),
        "false" => Attribute::Bool(false),
        _ => value
            .parse::<f64>()
            .map_or(Attribute::Str(value), Attribute::Number),
    };
    Ok((key, value))
}
