//! `cargo xtask new-service <name> [--path DIR] [--with PARTS] [--groundwork SOURCE]`: a new,
//! small service in its own directory outside this repository, composing Groundwork's crates.
//!
//! The files come from `xtask/templates/new-service/` (see [`template`] for the language),
//! compiled into xtask with `include_str!`. Everything is rendered and checked before the first
//! file is written, so bad input writes nothing. `tests/tests/it/new_service.rs` builds generated
//! services against the real servers: that test keeps the template in step with the crates.

mod manifest;
mod template;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// One `--with` choice: a client or a Groundwork feature the service composes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    Postgres,
    Redis,
    Rabbitmq,
    Clickhouse,
    Live,
    Flags,
}

impl Part {
    const ALL: [Self; 6] = [
        Self::Postgres,
        Self::Redis,
        Self::Rabbitmq,
        Self::Clickhouse,
        Self::Live,
        Self::Flags,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Rabbitmq => "rabbitmq",
            Self::Clickhouse => "clickhouse",
            Self::Live => "live",
            Self::Flags => "flags",
        }
    }

    pub(crate) fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|part| part.name() == word)
    }
}

/// Where the generated service takes the Groundwork crates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroundworkSource {
    /// This checkout, by absolute path.
    Path(PathBuf),
    /// A git repository at a tag.
    Git { url: String, tag: String },
    /// A registry configured under `[registries]` in `.cargo/config.toml`.
    Registry(String),
}

impl GroundworkSource {
    fn parse(text: &str, root: &Path) -> Result<Self> {
        if text == "path" {
            return Ok(Self::Path(root.to_path_buf()));
        }
        if let Some(rest) = text.strip_prefix("git=") {
            let Some((url, tag)) = rest.rsplit_once('#') else {
                bail!("--groundwork {text}: name the tag after `#`, e.g. git={rest}#v0.1.0");
            };
            if url.is_empty() || tag.is_empty() || url.contains(char::is_whitespace) {
                bail!(
                    "--groundwork {text}: expected git=URL#TAG, e.g. git=https://git.example/groundwork.git#v0.1.0"
                );
            }
            return Ok(Self::Git {
                url: url.to_owned(),
                tag: tag.to_owned(),
            });
        }
        if let Some(name) = text.strip_prefix("registry=") {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                bail!(
                    "--groundwork {text}: the registry name must be letters, digits, `-` or `_`, as under [registries] in .cargo/config.toml"
                );
            }
            return Ok(Self::Registry(name.to_owned()));
        }
        bail!("--groundwork {text}: expected `path`, `git=URL#TAG` or `registry=NAME`")
    }

    /// The source fields of the dependency on `groundwork-<name>` (the folder under `crates/`).
    fn fields(&self, name: &str, version: &str) -> Vec<String> {
        use manifest::quote;
        match self {
            Self::Path(root) => vec![
                format!("version = {}", quote(version)),
                format!(
                    "path = {}",
                    quote(&root.join("crates").join(name).to_string_lossy())
                ),
            ],
            Self::Git { url, tag } => vec![
                format!("git = {}", quote(url)),
                format!("tag = {}", quote(tag)),
            ],
            Self::Registry(registry) => vec![
                format!("version = {}", quote(version)),
                format!("registry = {}", quote(registry)),
            ],
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Path(root) => format!("the Groundwork checkout at `{}`, by path", root.display()),
            Self::Git { url, tag } => format!("git `{url}`, tag `{tag}`"),
            Self::Registry(name) => format!("the registry `{name}`"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewServiceOptions {
    /// The service's name: a crate name (letters, digits, `-`, `_`; starting with a letter)
    name: String,
    /// Directory to create (must not exist or be empty); default `../<name>` beside this repository
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// What the service composes besides config, telemetry and health, comma-separated:
    /// postgres, redis, rabbitmq, clickhouse, live (hot-reload config), flags (feature flags).
    /// live and flags need postgres and add it
    #[arg(long, value_name = "PARTS", default_value = "")]
    with: String,
    /// Where the Groundwork crates come from: `path` (this checkout), `git=URL#TAG` or
    /// `registry=NAME`
    #[arg(long, value_name = "SOURCE", default_value = "path")]
    groundwork: String,
}

/// A file of the template: where it lives under `xtask/templates/new-service/`, its text, where
/// it goes in the service, and the parts it needs (any of them; none = always).
struct TemplateFile {
    source: &'static str,
    text: &'static str,
    target: &'static str,
    needs: &'static [Part],
    executable: bool,
}

/// A [`TemplateFile`] read from `xtask/templates/new-service/` at compile time.
macro_rules! template_file {
    ($source:literal => $target:literal, needs [$($part:ident),*], executable: $executable:literal) => {
        TemplateFile {
            source: $source,
            text: include_str!(concat!("../templates/new-service/", $source)),
            target: $target,
            needs: &[$(Part::$part),*],
            executable: $executable,
        }
    };
    ($source:literal => $target:literal) => {
        template_file!($source => $target, needs [], executable: false)
    };
}

const TEMPLATE: &[TemplateFile] = &[
    // Not `Cargo.toml`: cargo reads every `Cargo.toml` of a git dependency's repository, and a
    // template is not a manifest.
    template_file!("Cargo.toml.tmpl" => "Cargo.toml"),
    template_file!("README.md" => "README.md"),
    template_file!("Dockerfile" => "Dockerfile"),
    template_file!("gitignore" => ".gitignore"),
    template_file!("clippy.toml" => "clippy.toml"),
    template_file!("env.example" => ".env.example"),
    template_file!("ci-run" => ".ci/run", needs [], executable: true),
    template_file!("config/default.toml" => "config/default.toml"),
    template_file!("src/main.rs" => "src/main.rs"),
    template_file!("src/lib.rs" => "src/lib.rs"),
    template_file!("src/http.rs" => "src/http.rs"),
    template_file!("src/settings.rs" => "src/settings.rs"),
    template_file!("tests/config.rs" => "tests/config.rs"),
    template_file!(
        "migrations/0001_visits.up.sql" => "migrations/0001_visits.up.sql",
        needs [Postgres],
        executable: false
    ),
    template_file!(
        "migrations/0001_visits.down.sql" => "migrations/0001_visits.down.sql",
        needs [Postgres],
        executable: false
    ),
];

/// A rendered file, ready to write.
struct Rendered {
    path: &'static str,
    text: String,
    executable: bool,
}

pub(crate) fn run(root: &Path, options: &NewServiceOptions) -> Result<()> {
    let mut plan = plan(root, options)?;
    write(&plan)?;
    complete_lock(&mut plan);
    let mut composes = vec!["config", "telemetry", "health"];
    composes.extend(plan.parts.iter().map(|part| part.name()));
    println!(
        "created service `{}` in {} ({} files)",
        options.name,
        plan.dir.display(),
        plan.files.len()
    );
    println!("  composes: {}", composes.join(", "));
    for note in &plan.notes {
        println!("  note: {note}");
    }
    println!("  groundwork crates from {}", plan.source.describe());
    println!("next:");
    println!("  cd {}", plan.dir.display());
    println!("  cp .env.example .env && cargo run");
    println!("  cargo test");
    Ok(())
}

/// Lets cargo fit the copied `Cargo.lock` to the service (its own package in, the workspace's
/// other members out), keeping every locked version, so `cargo build --locked` and the service's
/// `.ci/run` pass from the first commit. Offline for path dependencies, whose crates are all
/// downloaded already; a failure leaves the copy as it is, with a note.
fn complete_lock(plan: &mut Plan) {
    let mut command =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(["metadata", "--format-version", "1", "--quiet"])
        .current_dir(&plan.dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if matches!(plan.source, GroundworkSource::Path(_)) {
        command.arg("--offline");
    }
    if !command.status().is_ok_and(|status| status.success()) {
        plan.notes.push(
            "Cargo.lock is Groundwork's copy: the first `cargo build` fits it to the service; commit the result"
                .to_owned(),
        );
    }
}

/// Everything to write, checked: the directory, the files, what was chosen.
struct Plan {
    dir: PathBuf,
    files: Vec<Rendered>,
    parts: Vec<Part>,
    source: GroundworkSource,
    notes: Vec<String>,
}

fn plan(root: &Path, options: &NewServiceOptions) -> Result<Plan> {
    let (parts, mut notes) = parse_parts(&options.with)?;
    let source = GroundworkSource::parse(&options.groundwork, root)?;
    check_name(&options.name, &parts)?;
    let dir = match &options.path {
        Some(path) => path.clone(),
        None => root.parent().unwrap_or(root).join(&options.name),
    };
    let dir = check_dir(&dir, root)?;

    let workspace = manifest::Workspace::read(root)?;
    let mut values = BTreeMap::new();
    values.insert("name", options.name.clone());
    values.insert("crate", options.name.replace('-', "_"));
    values.insert("rust_version", workspace.package_field("rust-version")?);
    values.insert(
        "groundwork_repository",
        workspace.package_field("repository")?,
    );
    values.insert("groundwork_source", source.describe());
    values.insert("dependencies", workspace.dependency_lines(&parts, &source)?);
    values.insert("with_sentence", with_sentence(&parts));
    values.insert("servers_hint", servers_hint(&parts));

    let mut files = Vec::new();
    for file in TEMPLATE {
        if !file.needs.is_empty() && !file.needs.iter().any(|part| parts.contains(part)) {
            continue;
        }
        let mut text = template::render(file.source, file.text, &values, &parts)?;
        if Path::new(file.target)
            .extension()
            .is_some_and(|ext| ext == "rs")
        {
            // Blocks left out shift imports and line breaks; rustfmt settles them.
            text = rustfmt(file.source, &text, &mut notes)?;
        }
        files.push(Rendered {
            path: file.target,
            text,
            executable: file.executable,
        });
    }
    // The service starts with the exact versions Groundwork is tested with.
    let lock = root.join("Cargo.lock");
    files.push(Rendered {
        path: "Cargo.lock",
        text: std::fs::read_to_string(&lock)
            .with_context(|| format!("reading {}", lock.display()))?,
        executable: false,
    });
    Ok(Plan {
        dir,
        files,
        parts,
        source,
        notes,
    })
}

/// `text` formatted by `rustfmt` (edition 2024), through its stdin and stdout. Without rustfmt
/// the text is kept as rendered and a note says so.
fn rustfmt(source: &str, text: &str, notes: &mut Vec<String>) -> Result<String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    // Run from the repository, so rustup picks the toolchain Groundwork builds with.
    let spawned = Command::new("rustfmt")
        .current_dir(crate::project_root())
        .args(["--edition", "2024", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let note = "rustfmt not found: run `cargo fmt` in the service".to_owned();
            if !notes.contains(&note) {
                notes.push(note);
            }
            return Ok(text.to_owned());
        }
        Err(error) => return Err(error).context("cannot run rustfmt"),
    };
    child
        .stdin
        .take()
        .context("rustfmt has no stdin")?
        .write_all(text.as_bytes())
        .context("writing to rustfmt")?;
    let output = child.wait_with_output().context("waiting for rustfmt")?;
    if !output.status.success() {
        bail!(
            "rustfmt failed on the rendering of template {source}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("rustfmt wrote something that is not UTF-8")
}

/// The `--with` list: known parts, no repeats; live and flags bring postgres.
fn parse_parts(with: &str) -> Result<(Vec<Part>, Vec<String>)> {
    let mut parts = Vec::new();
    for word in with
        .split(',')
        .map(str::trim)
        .filter(|word| !word.is_empty())
    {
        let Some(part) = Part::parse(word) else {
            let known: Vec<&str> = Part::ALL.iter().map(|part| part.name()).collect();
            bail!(
                "--with: unknown part `{word}`; choose from {} (comma-separated)",
                known.join(", ")
            );
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    let mut notes = Vec::new();
    let needs_postgres: Vec<&str> = [Part::Live, Part::Flags]
        .into_iter()
        .filter(|part| parts.contains(part))
        .map(Part::name)
        .collect();
    if !needs_postgres.is_empty() && !parts.contains(&Part::Postgres) {
        parts.push(Part::Postgres);
        notes.push(format!(
            "added postgres: {} keep their tables in PostgreSQL",
            needs_postgres.join(" and ")
        ));
    }
    parts.sort();
    Ok((parts, notes))
}

/// Rust keywords (2024 edition, reserved ones included) and names cargo refuses for a package.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "std",
    "proc_macro",
    "proc-macro",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
];

/// A valid crate name that is not a keyword and not the name of one of its dependencies.
fn check_name(name: &str, parts: &[Part]) -> Result<()> {
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > 64 {
        Some(format!("it has {} characters; at most 64", name.len()))
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        Some("it must start with an ASCII letter".to_owned())
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(format!(
            "{bad:?} is not allowed; use ASCII letters, digits, `-` and `_`"
        ))
    } else if RESERVED.contains(&name) || RESERVED.contains(&name.replace('-', "_").as_str()) {
        Some("it is a Rust keyword or a name cargo reserves".to_owned())
    } else if name.to_ascii_lowercase().starts_with("groundwork")
        || manifest::dependency_names(parts)
            .iter()
            .any(|dependency| dependency.replace('-', "_") == name.replace('-', "_"))
    {
        Some("it is the name of a crate the service depends on".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => bail!(
            "`{name}` cannot be the service's name: {problem} (a crate name, e.g. `order-service`)"
        ),
        None => Ok(()),
    }
}

/// `dir` made absolute, checked: absent or an empty directory, outside this repository.
fn check_dir(dir: &Path, root: &Path) -> Result<PathBuf> {
    let absolute = normalize(
        &std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?,
    );
    match std::fs::metadata(&absolute) {
        Ok(metadata) if !metadata.is_dir() => {
            bail!(
                "{} exists and is not a directory; choose another --path",
                absolute.display()
            )
        }
        Ok(_) => {
            let mut entries = std::fs::read_dir(&absolute)
                .with_context(|| format!("cannot read {}", absolute.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; choose another --path or empty it first",
                    absolute.display()
                );
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot inspect {}", absolute.display()));
        }
    }
    // The deepest existing ancestor, with symlinks resolved, decides where the service lands.
    let existing = absolute
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(&absolute);
    let resolved = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    let repository = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if resolved.starts_with(&repository) {
        bail!(
            "{} is inside the Groundwork repository ({}); a service lives in its own directory, e.g. --path {}",
            absolute.display(),
            repository.display(),
            repository
                .parent()
                .unwrap_or(&repository)
                .join(absolute.file_name().unwrap_or_default())
                .display()
        );
    }
    Ok(absolute)
}

/// `path` without `.` and `..` components (lexically; `path` is absolute).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes every file; on a failure removes what it wrote, so nothing half-made is left.
fn write(plan: &Plan) -> Result<()> {
    let existed = plan.dir.exists();
    let result = write_files(plan);
    if result.is_err() {
        if existed {
            if let Ok(entries) = std::fs::read_dir(&plan.dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&plan.dir);
        }
    }
    result
}

fn write_files(plan: &Plan) -> Result<()> {
    for file in &plan.files {
        let path = plan.dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if file.executable {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    Ok(())
}

/// The README's list of what the service composes besides the basics.
fn with_sentence(parts: &[Part]) -> String {
    let described: Vec<&str> = parts
        .iter()
        .map(|part| match part {
            Part::Postgres => "PostgreSQL with migrations at start-up (groundwork-migrate)",
            Part::Redis => "Redis (groundwork-connect)",
            Part::Rabbitmq => "RabbitMQ (groundwork-connect)",
            Part::Clickhouse => "ClickHouse (groundwork-connect)",
            Part::Live => "hot-reload config from `platform_config` (groundwork-live)",
            Part::Flags => "feature flags (groundwork-flags)",
        })
        .collect();
    if described.is_empty() {
        String::new()
    } else {
        format!(". It also composes {}", described.join(", "))
    }
}

/// The README's hint on which servers `cargo run` needs.
fn servers_hint(parts: &[Part]) -> String {
    let servers: Vec<&str> = parts
        .iter()
        .filter_map(|part| match part {
            Part::Postgres => Some("PostgreSQL"),
            Part::Redis => Some("Redis"),
            Part::Rabbitmq => Some("RabbitMQ"),
            Part::Clickhouse => Some("ClickHouse"),
            Part::Live | Part::Flags => None,
        })
        .collect();
    if servers.is_empty() {
        " (none: this service has no dependencies to reach)".to_owned()
    } else {
        format!(
            " ({}; Groundwork's `cargo xtask infra up` starts them locally)",
            servers.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(name: &str, path: &Path, with: &str) -> NewServiceOptions {
        NewServiceOptions {
            name: name.to_owned(),
            path: Some(path.to_path_buf()),
            with: with.to_owned(),
            groundwork: "path".to_owned(),
        }
    }

    fn scratch() -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "gw-new-service-unit-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        Ok(dir)
    }

    #[test]
    fn every_combination_of_parts_renders() -> Result<()> {
        let root = crate::project_root();
        let target = scratch()?.join("svc");
        for mask in 0..(1_u32 << Part::ALL.len()) {
            let with: Vec<&str> = Part::ALL
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, part)| part.name())
                .collect();
            let plan = plan(&root, &options("svc", &target, &with.join(",")))
                .with_context(|| format!("--with {}", with.join(",")))?;
            let manifest = plan
                .files
                .iter()
                .find(|file| file.path == "Cargo.toml")
                .context("no Cargo.toml")?;
            assert!(manifest.text.contains("[workspace]"));
            let has_sqlx = manifest.text.contains("\nsqlx = ");
            assert_eq!(has_sqlx, plan.parts.contains(&Part::Postgres), "{with:?}");
            for file in &plan.files {
                assert!(!file.text.contains("{{"), "{} for {with:?}", file.path);
                assert!(!file.text.contains("//@"), "{} for {with:?}", file.path);
            }
        }
        assert!(!target.exists());
        Ok(())
    }

    #[test]
    fn live_and_flags_bring_postgres() -> Result<()> {
        let (parts, notes) = parse_parts("flags, live")?;
        assert_eq!(parts, [Part::Postgres, Part::Live, Part::Flags]);
        assert_eq!(
            notes,
            ["added postgres: live and flags keep their tables in PostgreSQL"]
        );
        Ok(())
    }

    #[test]
    fn groundwork_sources_are_parsed_or_refused_with_the_form_expected() -> Result<()> {
        let root = Path::new("/src/groundwork");
        assert_eq!(
            GroundworkSource::parse("git=https://git.example/gw.git#v0.1.0", root)?,
            GroundworkSource::Git {
                url: "https://git.example/gw.git".to_owned(),
                tag: "v0.1.0".to_owned()
            }
        );
        assert_eq!(
            GroundworkSource::parse("registry=company", root)?,
            GroundworkSource::Registry("company".to_owned())
        );
        assert_eq!(
            GroundworkSource::parse("path", root)?,
            GroundworkSource::Path(root.to_path_buf())
        );
        let fields = GroundworkSource::parse("registry=company", root)?.fields("config", "0.1.0");
        assert_eq!(fields, [r#"version = "0.1.0""#, r#"registry = "company""#]);
        for (input, expected) in [
            ("git=https://git.example/gw.git", "name the tag after `#`"),
            ("registry=", "the registry name must be"),
            (
                "crates.io",
                "expected `path`, `git=URL#TAG` or `registry=NAME`",
            ),
        ] {
            let error = GroundworkSource::parse(input, root)
                .map_or_else(|error| error.to_string(), |_| String::new());
            assert!(error.contains(expected), "{input}: {error}");
        }
        Ok(())
    }

    #[test]
    fn names_that_are_not_crate_names_are_refused() {
        for (name, expected) in [
            ("", "it is empty"),
            ("-svc", "must start with an ASCII letter"),
            ("svc.api", "'.' is not allowed"),
            ("self", "Rust keyword"),
            ("test", "Rust keyword or a name cargo reserves"),
            ("tokio", "the name of a crate the service depends on"),
            (
                "groundwork-orders",
                "the name of a crate the service depends on",
            ),
        ] {
            let error = check_name(name, &[]).map_or_else(|e| e.to_string(), |()| String::new());
            assert!(error.contains(expected), "{name:?}: {error}");
        }
        assert!(check_name("order-service", &Part::ALL).is_ok());
    }
}
