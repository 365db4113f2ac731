//! Finding the infra env file that `cargo xtask infra up` writes.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use groundwork_testkit::{InfraEnv, Service, UrlOrigin};

fn env(pairs: &[(&str, &str)]) -> InfraEnv {
    InfraEnv::from_vars(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    )
}

fn write_env_file(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join("env"),
        "export DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres\n",
    )?;
    Ok(())
}

#[test]
fn env_file_is_found_in_target_of_an_ancestor_of_the_crate() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    write_env_file(&workspace.path().join("target/infra"))?;
    let crate_dir = workspace.path().join("crates/testkit");
    fs::create_dir_all(&crate_dir)?;

    let found = env(&[]).locate_env_file(&crate_dir);

    assert_eq!(found, Some(workspace.path().join("target/infra/env")));
    Ok(())
}

#[test]
fn explicit_env_file_variable_wins_over_the_search() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    write_env_file(&workspace.path().join("target/infra"))?;

    let found =
        env(&[("GROUNDWORK_INFRA_ENV", "/elsewhere/env")]).locate_env_file(workspace.path());

    assert_eq!(found, Some(Path::new("/elsewhere/env").to_path_buf()));
    Ok(())
}

#[test]
fn cargo_target_dir_is_honoured_absolute_and_relative() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    write_env_file(&workspace.path().join("target/infra"))?;
    write_env_file(&workspace.path().join("build-out/infra"))?;
    let crate_dir = workspace.path().join("crates/testkit");
    fs::create_dir_all(&crate_dir)?;
    let absolute = workspace.path().join("build-out");
    let absolute = absolute
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-utf-8 temp dir"))?;

    let expected = Some(workspace.path().join("build-out/infra/env"));
    assert_eq!(
        env(&[("CARGO_TARGET_DIR", absolute)]).locate_env_file(&crate_dir),
        expected
    );
    assert_eq!(
        env(&[("CARGO_TARGET_DIR", "build-out")]).locate_env_file(&crate_dir),
        expected
    );
    Ok(())
}

#[test]
fn no_env_file_means_none_and_defaults_apply() -> anyhow::Result<()> {
    let empty = tempfile::tempdir()?;
    let env = env(&[]);

    assert_eq!(env.locate_env_file(empty.path()), None);
    assert_eq!(
        env.resolve(Service::Postgres),
        (
            Service::Postgres.default_url().to_owned(),
            UrlOrigin::Default
        )
    );
    Ok(())
}

#[test]
fn urls_from_the_env_file_are_used_for_services_it_names() -> anyhow::Result<()> {
    let env = env(&[("REDIS_URL", "redis://127.0.0.1:56379")]).with_env_file(
        "/ws/target/infra/env",
        "export DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres\n\
         export REDIS_URL=redis://127.0.0.1:1\n",
    )?;

    assert_eq!(
        env.url(Service::Postgres),
        "postgres://postgres@127.0.0.1:55432/postgres"
    );
    assert_eq!(env.url(Service::Redis), "redis://127.0.0.1:56379");
    assert_eq!(env.url(Service::ClickHouse), "http://127.0.0.1:8123");
    assert_eq!(env.env_file(), Some(Path::new("/ws/target/infra/env")));
    Ok(())
}

#[test]
fn discovery_in_this_process_succeeds() -> anyhow::Result<()> {
    let env = InfraEnv::discover()?;
    for service in Service::ALL {
        assert!(!env.url(service).is_empty());
    }
    Ok(())
}
