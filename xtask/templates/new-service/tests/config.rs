//! The configuration files agree with the settings type: `.env.example` lists exactly its keys,
//! and its example values with `config/default.toml` load.

use std::path::Path;

use anyhow::{Context as _, Result};
use {{crate}}::Settings;

/// The command that rewrites `.env.example` from [`Settings`].
const REGENERATE: &str = "UPDATE_ENV_EXAMPLE=1 cargo test --test config";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn env_example_lists_every_key_of_the_settings_type() -> Result<()> {
    let expected = groundwork_config::env_example_generated_by::<Settings>(REGENERATE);
    let path = root().join(".env.example");
    if std::env::var_os("UPDATE_ENV_EXAMPLE").is_some() {
        std::fs::write(&path, &expected).with_context(|| format!("writing {}", path.display()))?;
        return Ok(());
    }
    let actual =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    assert!(
        actual == expected,
        ".env.example differs from the settings type; run `{REGENERATE}` and commit the result"
    );
    Ok(())
}

#[test]
fn the_example_values_and_default_toml_load() -> Result<()> {
    let text = std::fs::read_to_string(root().join(".env.example"))?;
    let settings: Settings = groundwork_config::Loader::new()
        .vars(groundwork_config::parse_env_file(&text)?)
        .config_dir(root().join("config"))
        .no_dotenv()
        .load()?;
    assert_eq!(settings.service_name(), {{crate}}::SERVICE_NAME);
    assert!(settings.port > 0);
    Ok(())
}
