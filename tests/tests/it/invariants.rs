//! Architecture invariants from `ARCHITECTURE.md` that can be checked mechanically, so that they
//! stay true as the code changes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

/// Library source of every crate under `crates/`: `src/` without binaries (`main.rs`, `src/bin/`).
fn library_sources() -> Result<Vec<(String, PathBuf)>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("crates"))? {
        let crate_dir = entry?.path();
        let Some(name) = crate_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        let mut files = Vec::new();
        rust_files(&crate_dir.join("src"), &mut files)?;
        for file in files {
            let binary =
                file.ends_with("main.rs") || file.components().any(|c| c.as_os_str() == "bin");
            if !binary {
                sources.push((name.clone(), file));
            }
        }
    }
    if sources.is_empty() {
        bail!("no library sources found under crates/");
    }
    Ok(sources)
}

/// Code lines of a file: comment lines (docs, examples in docs) dropped.
fn code_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(index, line)| (index + 1, line.to_owned()))
        .collect())
}

/// Fails, naming every offending line as `file:line: text` under `what`, when a code line of
/// `files` is one that `offends`.
fn no_line_in(
    files: impl IntoIterator<Item = PathBuf>,
    offends: impl Fn(&str) -> bool,
    what: &str,
) -> Result<()> {
    let mut offenders = Vec::new();
    for file in files {
        for (line_number, line) in code_lines(&file)? {
            if offends(&line) {
                offenders.push(format!("{}:{line_number}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "{what}:\n{}", offenders.join("\n"));
    Ok(())
}

#[test]
fn no_library_but_config_and_the_test_kit_reads_environment_variables() -> Result<()> {
    let files = library_sources()?
        .into_iter()
        .filter(|(name, _)| name != "config" && name != "testkit")
        .map(|(_, file)| file);
    no_line_in(
        files,
        |line| line.contains("env::var") || line.contains("env::vars"),
        "library code reading the environment (only groundwork-config may)",
    )
}

/// Source of every package with code of its own: `src/` of the crates, examples and xtask,
/// binaries included (they print URLs too).
fn all_sources() -> Result<Vec<PathBuf>> {
    let root = workspace_root();
    let mut files = Vec::new();
    for parent in ["crates", "examples"] {
        for entry in std::fs::read_dir(root.join(parent))? {
            let src = entry?.path().join("src");
            if src.is_dir() {
                rust_files(&src, &mut files)?;
            }
        }
    }
    rust_files(&root.join("xtask/src"), &mut files)?;
    if files.is_empty() {
        bail!("no sources found under crates/, examples/ and xtask/");
    }
    Ok(files)
}

#[test]
fn groundwork_config_holds_the_only_url_redactor() -> Result<()> {
    // What a hand-written URL redactor cannot do without: setting a URL's password to a mask,
    // building a masked userinfo or scheme, or a function named like one.
    let signs = [
        "set_password(Some(",
        ":***@",
        "://***",
        "fn redact_url",
        "fn mask_password",
        "fn display_url",
        "fn redact(",
    ];
    let redactor = workspace_root().join("crates/config/src/redact.rs");
    no_line_in(
        all_sources()?.into_iter().filter(|file| *file != redactor),
        |line| signs.iter().any(|sign| line.contains(sign)),
        "URL redaction outside groundwork-config (call groundwork_config::redact_url)",
    )
}

#[test]
fn groundwork_config_holds_the_only_env_file_reader() -> Result<()> {
    // `.env` and `target/infra/env` are read by `groundwork_config::parse_env_file`, the reader
    // of the quoting `quote_env_value` writes; a second reader would misread some value.
    let signs = [
        "dotenvy::",
        "fn parse_env_file",
        "strip_prefix(\"export \")",
    ];
    let config = workspace_root().join("crates/config/src");
    no_line_in(
        all_sources()?
            .into_iter()
            .filter(|file| !file.starts_with(&config)),
        |line| signs.iter().any(|sign| line.contains(sign)),
        "an env-file reader outside groundwork-config (call groundwork_config::parse_env_file)",
    )
}

/// The public modules of the library crates, as `crate: path`; every other module is private, so
/// what a crate re-exports from its root is its API (ARCHITECTURE.md, "Public API").
const PUBLIC_MODULES: &[&str] = &[
    "flags: admin",
    "flags: store",
    "live: config",
    "live: config::admin",
    "live: versioned",
    "migrate: clickhouse",
    "migrate: plan",
    "migrate: postgres",
    "service: amqp",
    "telemetry: amqp",
    "telemetry: http",
    "telemetry: pools",
];

#[test]
fn only_the_documented_modules_are_public() -> Result<()> {
    let mut public = Vec::new();
    for (name, file) in library_sources()? {
        let src = workspace_root().join("crates").join(&name).join("src");
        let Ok(relative) = file.strip_prefix(&src) else {
            continue;
        };
        // `lib.rs` declares top-level modules; `a/mod.rs` and `a.rs` declare modules of `a`.
        let parent: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|part| part != "lib" && part != "mod")
            .collect();
        for (_, line) in code_lines(&file)? {
            let Some(module) = line
                .trim_start()
                .strip_prefix("pub mod ")
                .and_then(|rest| rest.strip_suffix(';'))
            else {
                continue;
            };
            let path: Vec<&str> = parent.iter().map(String::as_str).chain([module]).collect();
            public.push(format!("{name}: {}", path.join("::")));
        }
    }
    public.sort();
    assert_eq!(
        public, PUBLIC_MODULES,
        "public modules changed: make a new module private and re-export what it offers from the \
         crate root, or add it here and to ARCHITECTURE.md's \"Public API\""
    );
    Ok(())
}

#[test]
fn only_the_health_crate_among_libraries_chooses_route_paths() -> Result<()> {
    let files = library_sources()?
        .into_iter()
        .filter(|(name, _)| name != "health")
        .map(|(_, file)| file);
    no_line_in(
        files,
        |line| line.contains(".route(\"/") || line.contains(".nest(\"/"),
        "library code choosing HTTP paths (services and groundwork-health do)",
    )
}

#[test]
fn the_flags_core_builds_without_a_database_or_a_runtime() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "tree",
            "-p",
            "groundwork-flags",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tree = String::from_utf8(output.stdout)?;
    assert!(
        tree.lines().any(|line| line.starts_with("arc-swap ")),
        "cargo tree printed no dependency list:\n{tree}"
    );
    for forbidden in ["sqlx ", "tokio ", "lapin ", "reqwest "] {
        assert!(
            !tree.lines().any(|line| line.starts_with(forbidden)),
            "groundwork-flags without features depends on {forbidden}:\n{tree}"
        );
    }
    Ok(())
}

#[test]
fn library_code_needs_nothing_outside_its_packaged_crate() -> Result<()> {
    // A crate used from a registry or a git tag is built from its package alone, and a binary
    // runs where no source exists: no path baked in from the build machine, no file included
    // from outside the crate's own directory.
    let mut offenders = Vec::new();
    for (name, file) in library_sources()? {
        let crate_dir = workspace_root().join("crates").join(&name).canonicalize()?;
        for (line_number, line) in code_lines(&file)? {
            let at = || format!("{}:{line_number}: {}", file.display(), line.trim());
            if line.contains("env!(\"CARGO_MANIFEST_DIR\")") {
                offenders.push(format!("{} (a build machine's path)", at()));
            }
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                let Some(start) = line.find(macro_name) else {
                    continue;
                };
                let rest = &line[start + macro_name.len()..];
                let included = rest.split('"').next().unwrap_or_default();
                let base = file.parent().unwrap_or(&crate_dir);
                let inside = base
                    .join(included)
                    .canonicalize()
                    .is_ok_and(|path| path.starts_with(&crate_dir));
                if !inside {
                    offenders.push(format!("{} (outside {})", at(), crate_dir.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "library code reaching outside its package:\n{}",
        offenders.join("\n")
    );
    Ok(())
}
