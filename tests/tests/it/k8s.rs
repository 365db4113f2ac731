//! The Kubernetes manifests in `deploy/k8s` set only environment variables the services' settings
//! know, so the manifests and the code cannot drift apart.
//!
//! The services' settings types are the source of truth: `groundwork-config` derives the
//! variables it reads from their JSON schema (the same derivation `.env.example` is generated
//! from), each one directly or as `<NAME>_FILE`, plus `APP_ENV`/`NODE_ENV`. Every file under
//! `deploy/k8s` is read: the `KEY=VALUE` files of each `configMapGenerator` (base and overlays),
//! their literals, and the `env` of every container in every manifest and inline patch. A container
//! belongs to the service its image names (`groundwork/<service>`), a generated `ConfigMap` to the
//! service its name names (`<service>-env`). Each overlay's variables are also loaded into the
//! settings types, as a pod would load them. The schema checks (kubernetes-validate) and the
//! rendering of the overlays run in `.ci/run`; when `kubectl` is installed, this test also
//! renders every overlay with `kubectl kustomize` and checks the `ConfigMap`s it would apply.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use groundwork_config::ConfigSchema;
use groundwork_tests::repository_root;
use schemars::JsonSchema;
use yaml_rust2::{Yaml, YamlLoader};

/// Images whose settings are not a `groundwork-config` schema (the backup CLI reads its own
/// variables through clap): their variables are left to the schema validator.
const UNCHECKED_SERVICES: &[&str] = &["backup"];

/// What one service reads from its environment.
struct Service {
    /// Every variable name it reads, `<NAME>_FILE` forms included.
    known: BTreeSet<String>,
    /// Variables without which it does not start (a required key, directly or as `_FILE`).
    required: Vec<String>,
}

fn service_of<T: JsonSchema>() -> Service {
    let schema = ConfigSchema::of::<T>();
    let mut known: BTreeSet<String> = ["APP_ENV", "NODE_ENV"].map(str::to_owned).into();
    let mut required = Vec::new();
    for key in schema.keys() {
        for name in &key.env_names {
            known.insert(name.clone());
            known.insert(format!("{name}_FILE"));
        }
        if key.required {
            required.push(key.env_name().to_owned());
        }
    }
    Service { known, required }
}

fn services() -> BTreeMap<&'static str, Service> {
    BTreeMap::from([
        (
            "api-gateway",
            service_of::<groundwork_example_api_gateway::Settings>(),
        ),
        (
            "order-worker",
            service_of::<groundwork_example_order_worker::Settings>(),
        ),
        (
            "analytics-ingest",
            service_of::<groundwork_example_analytics_ingest::Settings>(),
        ),
    ])
}

/// One variable some manifest sets, and where.
#[derive(Debug)]
struct Setting {
    service: String,
    name: String,
    value: Option<String>,
    place: String,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

fn load_yaml(text: &str, place: &str) -> Result<Vec<Yaml>> {
    YamlLoader::load_from_str(text).with_context(|| format!("{place} is not valid YAML"))
}

/// The service an image runs: `groundwork/api-gateway` (or a registry's
/// `registry.example/groundwork/api-gateway:0.1.0`) runs `api-gateway`.
fn service_of_image(image: &str) -> Option<String> {
    let without_tag = image.split('@').next()?;
    let last = without_tag.rsplit('/').next()?;
    let name = last.split(':').next()?;
    image.contains("groundwork/").then(|| name.to_owned())
}

/// Every container (and init container) anywhere in a document, whatever kind holds it.
fn containers<'a>(node: &'a Yaml, out: &mut Vec<&'a Yaml>) {
    match node {
        Yaml::Hash(map) => {
            for (key, value) in map {
                let is_list = matches!(key.as_str(), Some("containers" | "initContainers"));
                if let (true, Some(items)) = (is_list, value.as_vec()) {
                    out.extend(items.iter());
                } else {
                    containers(value, out);
                }
            }
        }
        Yaml::Array(items) => items.iter().for_each(|item| containers(item, out)),
        _ => {}
    }
}

/// The settings of every container in `docs`, and its problems (a container whose image names
/// no known service).
fn container_settings(docs: &[Yaml], place: &str, settings: &mut Vec<Setting>) {
    let mut found = Vec::new();
    for doc in docs {
        containers(doc, &mut found);
    }
    for container in found {
        let name = container["name"].as_str().unwrap_or("(unnamed)");
        let Some(service) = container["image"].as_str().and_then(service_of_image) else {
            // A patch may name a container without its image; its service is its name.
            push_env(container, name, name, place, settings);
            continue;
        };
        push_env(container, &service, name, place, settings);
    }
}

fn push_env(container: &Yaml, service: &str, name: &str, place: &str, out: &mut Vec<Setting>) {
    for var in container["env"].as_vec().into_iter().flatten() {
        out.push(Setting {
            service: service.to_owned(),
            name: var["name"].as_str().unwrap_or("").to_owned(),
            value: var["value"].as_str().map(str::to_owned),
            place: format!("{place}: container `{name}`"),
        });
    }
}

/// The variables of every `configMapGenerator` of a kustomization: its env files and literals.
fn generator_settings(
    kustomization: &Yaml,
    dir: &Path,
    place: &str,
    settings: &mut Vec<Setting>,
    problems: &mut Vec<String>,
) -> Result<()> {
    for generator in kustomization["configMapGenerator"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let name = generator["name"].as_str().unwrap_or("");
        let Some(service) = name.strip_suffix("-env") else {
            problems.push(format!(
                "{place}: ConfigMap `{name}` does not end in `-env`, so no service owns it"
            ));
            continue;
        };
        for file in generator["envs"].as_vec().into_iter().flatten() {
            let file = file.as_str().unwrap_or("");
            let path = dir.join(file);
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let pairs = groundwork_config::parse_env_file(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            for (key, value) in pairs {
                settings.push(Setting {
                    service: service.to_owned(),
                    name: key,
                    value: Some(value),
                    place: format!("{} (ConfigMap `{name}`)", relative(&path)),
                });
            }
            // kustomize keeps quotes as part of the value, unlike a `.env` file.
            for (number, line) in text.lines().enumerate() {
                let value = line.split_once('=').map_or("", |(_, value)| value);
                if !line.trim_start().starts_with('#') && value.starts_with(['"', '\'']) {
                    problems.push(format!(
                        "{}:{}: a quoted value; kustomize would keep the quotes",
                        relative(&path),
                        number + 1
                    ));
                }
            }
        }
        for literal in generator["literals"].as_vec().into_iter().flatten() {
            let literal = literal.as_str().unwrap_or("");
            let (key, value) = literal.split_once('=').unwrap_or((literal, ""));
            settings.push(Setting {
                service: service.to_owned(),
                name: key.to_owned(),
                value: Some(value.to_owned()),
                place: format!("{place} (ConfigMap `{name}`, literal)"),
            });
        }
    }
    // Inline patches may set a container's env too.
    for patch in kustomization["patches"].as_vec().into_iter().flatten() {
        if let Some(text) = patch["patch"].as_str() {
            let docs = load_yaml(text, &format!("a patch in {place}"))?;
            container_settings(&docs, &format!("{place} (inline patch)"), settings);
        }
    }
    Ok(())
}

fn relative(path: &Path) -> String {
    let root = repository_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every variable the manifests under `dir` set, and the problems found while reading them.
fn read_manifests(dir: &Path) -> Result<(Vec<Setting>, Vec<String>)> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files)?;
    ensure!(!files.is_empty(), "no manifests under {}", dir.display());
    let mut settings = Vec::new();
    let mut problems = Vec::new();
    for path in &files {
        let place = relative(path);
        let text = fs::read_to_string(path).with_context(|| format!("reading {place}"))?;
        let docs = load_yaml(&text, &place)?;
        let is_kustomization = path
            .file_name()
            .is_some_and(|name| name == "kustomization.yaml");
        if is_kustomization {
            let parent = path.parent().unwrap_or(dir);
            for doc in &docs {
                generator_settings(doc, parent, &place, &mut settings, &mut problems)?;
            }
        } else {
            container_settings(&docs, &place, &mut settings);
        }
    }
    Ok((settings, problems))
}

/// Every variable that no settings type knows, and every required setting no manifest gives.
fn check(dir: &Path) -> Result<Vec<String>> {
    let services = services();
    let (settings, mut problems) = read_manifests(dir)?;
    for setting in &settings {
        if UNCHECKED_SERVICES.contains(&setting.service.as_str()) {
            continue;
        }
        let Some(service) = services.get(setting.service.as_str()) else {
            problems.push(format!(
                "{}: `{}` is for `{}`, which is not a known service (known: {})",
                setting.place,
                setting.name,
                setting.service,
                services.keys().copied().collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        if !service.known.contains(&setting.name) {
            problems.push(format!(
                "{}: `{}` is not a setting of {}: its settings schema reads no such variable",
                setting.place, setting.name, setting.service
            ));
        }
    }
    for (name, service) in &services {
        for required in &service.required {
            let file = format!("{required}_FILE");
            let given = settings.iter().any(|setting| {
                setting.service == *name && (setting.name == *required || setting.name == file)
            });
            if !given {
                problems.push(format!(
                    "{name} needs `{required}` (or `{file}`), and no manifest under deploy/k8s sets it"
                ));
            }
        }
    }
    Ok(problems)
}

fn k8s_dir() -> PathBuf {
    repository_root().join("deploy/k8s")
}

#[test]
fn manifests_set_only_variables_the_services_settings_know() -> Result<()> {
    let problems = check(&k8s_dir())?;
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn manifests_read_secrets_from_mounted_files() -> Result<()> {
    let (settings, _) = read_manifests(&k8s_dir())?;
    let services = services();
    let mut checked = 0;
    for setting in settings
        .iter()
        .filter(|setting| services.contains_key(setting.service.as_str()))
    {
        let secret = setting.name.ends_with("_URL") || setting.name.ends_with("_SECRET");
        ensure!(
            !secret,
            "{}: `{}` is set in plain text; mount it from a Secret and set `{}_FILE`",
            setting.place,
            setting.name,
            setting.name
        );
        if setting.name.ends_with("_FILE") {
            let value = setting.value.as_deref().unwrap_or("");
            ensure!(
                value.starts_with("/run/secrets/"),
                "{}: `{}` = `{value}` is not under /run/secrets/, where the Secrets are mounted",
                setting.place,
                setting.name
            );
            checked += 1;
        }
    }
    ensure!(checked >= 7, "only {checked} *_FILE settings found");
    Ok(())
}

/// Copies `deploy/k8s` to a scratch directory so a test can break a copy.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[test]
fn an_unknown_variable_in_a_manifest_is_reported() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let copy = scratch.path().join("k8s");
    copy_dir(&k8s_dir(), &copy)?;

    // A typo in an env file of the production overlay's ConfigMap.
    let env_file = copy.join("overlays/production/api-gateway.env");
    let mut text = fs::read_to_string(&env_file)?;
    text.push_str("DATABSE_POOL_SIZE=30\n");
    fs::write(&env_file, text)?;
    // A variable set directly on a container that its service does not read.
    let deployment = copy.join("base/order-worker.yaml");
    let text = fs::read_to_string(&deployment)?.replacen(
        "          envFrom:\n",
        "          env:\n            - name: WORKER_THREADS\n              value: \"4\"\n          envFrom:\n",
        1,
    );
    fs::write(&deployment, text)?;
    // A required setting dropped.
    let env_file = copy.join("base/analytics-ingest.env");
    let text =
        fs::read_to_string(&env_file)?.replace("CLICKHOUSE_URL_FILE=", "# CLICKHOUSE_URL_FILE=");
    fs::write(&env_file, text)?;

    let problems = check(&copy)?;
    let report = problems.join("\n");
    ensure!(problems.len() == 3, "expected three problems:\n{report}");
    ensure!(
        report.contains("`DATABSE_POOL_SIZE` is not a setting of api-gateway")
            && report.contains("api-gateway.env (ConfigMap `api-gateway-env`)"),
        "{report}"
    );
    ensure!(
        report.contains("`WORKER_THREADS` is not a setting of order-worker")
            && report.contains("container `order-worker`"),
        "{report}"
    );
    ensure!(
        report.contains("analytics-ingest needs `CLICKHOUSE_URL` (or `CLICKHOUSE_URL_FILE`)"),
        "{report}"
    );
    Ok(())
}

/// A service's variables in an overlay: the base's env file, then the overlay's over it (what
/// `behavior: merge` does).
fn overlay_env(overlay: &str, service: &str) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for path in [
        k8s_dir().join("base").join(format!("{service}.env")),
        k8s_dir()
            .join("overlays")
            .join(overlay)
            .join(format!("{service}.env")),
    ] {
        if !path.exists() {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        vars.extend(groundwork_config::parse_env_file(&text)?);
    }
    Ok(vars)
}

/// Loads `T` from an overlay's variables as the pod would, with its Secret's files made up in
/// `secrets` (URLs with long, random-looking passwords, as production's guard wants).
fn load_in_pod<T>(vars: &BTreeMap<String, String>, secrets: &Path) -> Result<T>
where
    T: serde::de::DeserializeOwned + JsonSchema,
{
    let made_up = |name: &str| match name {
        "database-url" => "postgres://app:Vb7tQ2mZx9LkP4wR8sNd@postgres.db:5432/app",
        "redis-url" => "redis://:Vb7tQ2mZx9LkP4wR8sNd@redis.db:6379",
        "rabbitmq-url" => "amqp://app:Vb7tQ2mZx9LkP4wR8sNd@rabbitmq.mq:5672/%2f",
        "clickhouse-url" => "http://app:Vb7tQ2mZx9LkP4wR8sNd@clickhouse.analytics:8123",
        _ => "",
    };
    let mut pod_vars = Vec::new();
    for (name, value) in vars {
        let value = match value.strip_prefix("/run/secrets/groundwork/") {
            Some(file) if name.ends_with("_FILE") => {
                ensure!(!made_up(file).is_empty(), "no made-up secret for {file}");
                let path = secrets.join(file);
                fs::write(&path, format!("{}\n", made_up(file)))?;
                path.display().to_string()
            }
            _ => value.clone(),
        };
        pod_vars.push((name.clone(), value));
    }
    groundwork_config::Loader::new()
        .no_dotenv()
        .config_dir(secrets.join("no-config-files"))
        .vars(pod_vars)
        .load()
        .map_err(|error| anyhow::anyhow!("{error}"))
}

#[test]
fn every_overlay_s_settings_load_as_the_pods_would_load_them() -> Result<()> {
    for overlay in ["staging", "production"] {
        let secrets = tempfile::tempdir()?;
        let gateway: groundwork_example_api_gateway::Settings =
            load_in_pod(&overlay_env(overlay, "api-gateway")?, secrets.path())
                .with_context(|| format!("api-gateway in {overlay}"))?;
        ensure!(gateway.host == "0.0.0.0" && gateway.port == 8080);
        ensure!(
            gateway.shutdown_drain_ms == 5000,
            "the grace period assumes 5000"
        );
        ensure!(gateway.config_env == overlay);
        let worker: groundwork_example_order_worker::Settings =
            load_in_pod(&overlay_env(overlay, "order-worker")?, secrets.path())
                .with_context(|| format!("order-worker in {overlay}"))?;
        ensure!(worker.host == "0.0.0.0" && worker.port == 8080);
        let ingest: groundwork_example_analytics_ingest::Settings =
            load_in_pod(&overlay_env(overlay, "analytics-ingest")?, secrets.path())
                .with_context(|| format!("analytics-ingest in {overlay}"))?;
        ensure!(ingest.host == "0.0.0.0" && ingest.port == 8080);
    }
    Ok(())
}

/// The `ConfigMap`s `kubectl kustomize` renders for an overlay: name prefix → variable names.
fn rendered_config_maps(overlay: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay)
        .output()
        .context("running kubectl kustomize")?;
    if !output.status.success() {
        bail!(
            "kubectl kustomize {} failed: {}",
            overlay.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout)?;
    let mut maps = Vec::new();
    for doc in load_yaml(&text, "kubectl kustomize's output")? {
        if doc["kind"].as_str() != Some("ConfigMap") {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let keys = doc["data"]
            .as_hash()
            .into_iter()
            .flatten()
            .filter_map(|(key, _)| key.as_str().map(str::to_owned))
            .collect();
        maps.push((name, keys));
    }
    Ok(maps)
}

#[test]
fn rendered_overlays_hold_only_known_variables() -> Result<()> {
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    if !kubectl.is_ok_and(|output| output.status.success()) {
        eprintln!("kubectl is not installed: the rendered overlays are not checked here");
        return Ok(());
    }
    let services = services();
    let mut rendered = 0;
    for overlay in ["staging", "production"] {
        let dir = k8s_dir().join("overlays").join(overlay);
        for (name, keys) in rendered_config_maps(&dir)? {
            // Generated names carry a content hash: `api-gateway-env-86fhtg6492`.
            let Some((service, _)) = name.rsplit_once("-env-") else {
                bail!("{overlay}: ConfigMap `{name}` is not a generated `<service>-env`");
            };
            if UNCHECKED_SERVICES.contains(&service) {
                continue;
            }
            let known = &services
                .get(service)
                .with_context(|| format!("{overlay}: ConfigMap `{name}` of no known service"))?
                .known;
            for key in keys {
                ensure!(
                    known.contains(&key),
                    "{overlay}: ConfigMap `{name}` sets `{key}`, which {service} does not read"
                );
                rendered += 1;
            }
        }
    }
    ensure!(rendered > 40, "only {rendered} rendered variables");
    Ok(())
}
