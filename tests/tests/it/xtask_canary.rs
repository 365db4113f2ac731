//! A secret planted in the userinfo and as query parameters of every URL variable never appears
//! in what `cargo xtask infra status` and `cargo xtask status` print, on stdout or stderr,
//! whether the servers answer or not.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};

const CANARY: &str = "Xt-Canary-8d2c";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `base` with the canary as the userinfo password and as `password`, `token` and `sslpassword`
/// query parameters.
fn planted(base: &str, user: &str) -> Result<String> {
    let mut url = url::Url::parse(base)?;
    url.set_username(user)
        .map_err(|()| anyhow::anyhow!("{base} cannot have a user"))?;
    url.set_password(Some(&format!("{CANARY}-userinfo")))
        .map_err(|()| anyhow::anyhow!("{base} cannot have a password"))?;
    url.set_query(Some(&format!(
        "password={CANARY}-query&token={CANARY}-token&sslpassword={CANARY}-ssl"
    )));
    Ok(url.to_string())
}

/// What `cargo xtask <args>` printed on stdout and stderr, whatever its exit status.
fn xtask(args: &[&str], vars: &[(&str, String)]) -> Result<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .arg("xtask")
        .args(args)
        .current_dir(workspace_root())
        .envs(vars.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .with_context(|| format!("cannot run cargo xtask {}", args.join(" ")))?;
    Ok(format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[test]
fn xtask_status_commands_never_print_a_planted_secret() -> Result<()> {
    let vars = [
        (
            "DATABASE_URL",
            planted("postgres://127.0.0.1:5432/postgres", "postgres")?,
        ),
        ("REDIS_URL", planted("redis://127.0.0.1:6379", "default")?),
        (
            "RABBITMQ_URL",
            planted("amqp://127.0.0.1:5672/%2f", "guest")?,
        ),
        (
            "CLICKHOUSE_URL",
            planted("http://127.0.0.1:8123", "default")?,
        ),
        (
            "GROUNDWORK_STACK_DATABASE_URL",
            planted("postgres://127.0.0.1:5432/groundwork_stack", "postgres")?,
        ),
    ];
    for args in [&["infra", "status"][..], &["status"][..]] {
        let printed = xtask(args, &vars)?;
        assert!(
            printed.lines().count() > 1,
            "cargo xtask {} printed nothing:\n{printed}",
            args.join(" ")
        );
        assert!(
            !printed.contains(CANARY),
            "cargo xtask {} shows a secret:\n{printed}",
            args.join(" ")
        );
    }
    Ok(())
}
