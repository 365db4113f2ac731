//! The loader's behaviour as a service sees it: layers, names, `_FILE`, errors and the guard.
//! Every test passes its variables explicitly, so tests never touch the process environment and
//! run in parallel.

use std::path::Path;

use groundwork_config::{
    AppEnv, ConfigError, ExposeSecret, Loader, ProblemKind, Secret, SecretUrl, env_example,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
struct Settings {
    /// PostgreSQL connection string.
    #[schemars(example = "postgres://app:app@localhost:5432/app")]
    database_url: SecretUrl,
    /// Port the HTTP server listens on.
    #[serde(default = "default_port")]
    port: u16,
    /// Minimum log level.
    #[serde(default)]
    log_level: Level,
    /// Signs session tokens.
    #[schemars(length(min = 32))]
    jwt_secret: Secret,
    /// Where traces go.
    #[serde(default)]
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_ENDPOINT"))]
    otlp_endpoint: Option<String>,
    /// Service name in logs.
    #[serde(default = "default_name")]
    service_name: String,
    #[serde(default)]
    database: Pool,
    /// Tenants in the canary.
    #[serde(default)]
    canary_tenants: Vec<String>,
    /// Whether the admin UI is served.
    #[serde(default)]
    admin_enabled: bool,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
struct Pool {
    /// Connections per replica.
    #[serde(default = "default_pool")]
    #[schemars(range(min = 1, max = 500))]
    pool_size: u32,
}

#[derive(Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Level {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

fn default_port() -> u16 {
    8080
}
fn default_name() -> String {
    "query-engine".to_owned()
}
fn default_pool() -> u32 {
    10
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            pool_size: default_pool(),
        }
    }
}

const DB: &str = "postgres://app:pw@localhost:5432/app";
const JWT: &str = "0123456789abcdef0123456789abcdef-real";

fn base_vars() -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".to_owned(), DB.to_owned()),
        ("JWT_SECRET".to_owned(), JWT.to_owned()),
    ]
}

fn with(mut vars: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (name, value) in extra {
        vars.retain(|(n, _)| n != name);
        vars.push(((*name).to_owned(), (*value).to_owned()));
    }
    vars
}

/// A loader rooted in a temporary directory that holds no files unless a test writes them.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        std::fs::create_dir_all(dir.path().join("config")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        Self { dir }
    }

    fn write(&self, relative: &str, content: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {relative}: {e}"));
        path
    }

    fn path(&self, relative: &str) -> std::path::PathBuf {
        self.dir.path().join(relative)
    }

    fn loader(&self, vars: Vec<(String, String)>) -> Loader {
        Loader::new()
            .config_dir(self.dir.path().join("config"))
            .dotenv(self.dir.path().join(".env"))
            .vars(vars)
    }
}

fn load(scene: &Scene, vars: Vec<(String, String)>) -> Result<Settings, ConfigError> {
    scene.loader(vars).load::<Settings>()
}

fn kinds(error: &ConfigError) -> Vec<(String, ProblemKind)> {
    error
        .problems()
        .iter()
        .map(|p| (p.key.clone(), p.kind.clone()))
        .collect()
}

#[test]
fn defaults_apply_when_nothing_else_sets_a_key() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let settings = load(&scene, base_vars())?;
    assert_eq!(settings.port, 8080);
    assert_eq!(settings.log_level, Level::Info);
    assert_eq!(settings.database.pool_size, 10);
    assert_eq!(settings.service_name, "query-engine");
    assert!(settings.otlp_endpoint.is_none());
    Ok(())
}

#[test]
fn each_layer_overrides_the_one_below() -> Result<(), ConfigError> {
    let scene = Scene::new();
    // Each layer sets the port and one key of its own, so both overriding and merging show.
    scene.write(
        "config/default.toml",
        "port = 1001\nservice_name = \"from-default\"\n",
    );
    let settings = load(&scene, base_vars())?;
    assert_eq!(
        (settings.port, settings.service_name.as_str()),
        (1001, "from-default")
    );

    scene.write(
        "config/development.toml",
        "port = 1002\n[database]\npool_size = 7\n",
    );
    let settings = load(&scene, base_vars())?;
    assert_eq!(
        (settings.port, settings.service_name.as_str()),
        (1002, "from-default")
    );
    assert_eq!(settings.database.pool_size, 7);

    scene.write(".env", "PORT=1003\nLOG_LEVEL=debug\n");
    let settings = load(&scene, base_vars())?;
    assert_eq!(settings.port, 1003);
    assert_eq!(settings.log_level, Level::Debug);
    assert_eq!(settings.database.pool_size, 7);

    let settings = load(&scene, with(base_vars(), &[("PORT", "1004")]))?;
    assert_eq!(settings.port, 1004);
    assert_eq!(settings.log_level, Level::Debug);
    Ok(())
}

#[test]
fn an_enum_value_from_the_environment_is_read_in_any_case() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let settings = load(&scene, with(base_vars(), &[("LOG_LEVEL", " DEBUG")]))?;
    assert_eq!(settings.log_level, Level::Debug);
    let error = load(&scene, with(base_vars(), &[("LOG_LEVEL", "verbose")]))
        .err()
        .map(|error| kinds(&error))
        .unwrap_or_default();
    assert_eq!(
        error,
        [(
            "log_level".to_owned(),
            ProblemKind::NotOneOf {
                allowed: vec!["error".into(), "warn".into(), "info".into(), "debug".into()]
            }
        )]
    );
    Ok(())
}

#[test]
fn app_env_selects_the_environment_file() -> Result<(), ConfigError> {
    let scene = Scene::new();
    scene.write("config/staging.toml", "port = 2000\n");
    scene.write("config/test.toml", "port = 3000\n");
    let staging = load(&scene, with(base_vars(), &[("APP_ENV", "staging")]))?;
    assert_eq!(staging.port, 2000);
    let test = load(&scene, with(base_vars(), &[("APP_ENV", "test")]))?;
    assert_eq!(test.port, 3000);
    let node = load(&scene, with(base_vars(), &[("NODE_ENV", "test")]))?;
    assert_eq!(node.port, 3000);
    Ok(())
}

#[test]
fn dotenv_is_read_only_in_development_and_test() -> Result<(), ConfigError> {
    let scene = Scene::new();
    scene.write(".env", "PORT=1234\n");
    for (env, expected) in [
        ("development", 1234),
        ("test", 1234),
        ("staging", 8080),
        ("production", 8080),
    ] {
        let settings = load(&scene, with(base_vars(), &[("APP_ENV", env)]))?;
        assert_eq!(settings.port, expected, "APP_ENV={env}");
    }
    Ok(())
}

#[test]
fn dotenv_never_overrides_a_variable_that_is_set() -> Result<(), ConfigError> {
    let scene = Scene::new();
    scene.write(".env", "PORT=1234\nSERVICE_NAME=from-dotenv\n");
    let settings = load(&scene, with(base_vars(), &[("PORT", "4321")]))?;
    assert_eq!(settings.port, 4321);
    assert_eq!(settings.service_name, "from-dotenv");
    Ok(())
}

#[test]
fn required_keys_can_come_from_dotenv_alone() -> Result<(), ConfigError> {
    let scene = Scene::new();
    scene.write(".env", &format!("DATABASE_URL={DB}\nJWT_SECRET={JWT}\n"));
    let settings = load(&scene, Vec::new())?;
    assert_eq!(settings.database_url.expose_secret(), DB);
    Ok(())
}

#[test]
fn nested_flat_and_explicit_names_all_set_their_key() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let settings = load(
        &scene,
        with(
            base_vars(),
            &[
                ("DATABASE__POOL_SIZE", "42"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"),
            ],
        ),
    )?;
    assert_eq!(settings.database.pool_size, 42);
    assert_eq!(
        settings.otlp_endpoint.as_deref(),
        Some("http://jaeger:4317")
    );

    let flat = load(&scene, with(base_vars(), &[("DATABASE_POOL_SIZE", "43")]))?;
    assert_eq!(flat.database.pool_size, 43);
    let nested_url = load(
        &scene,
        vec![
            ("DATABASE__URL".to_owned(), DB.to_owned()),
            ("JWT_SECRET".to_owned(), JWT.to_owned()),
        ],
    );
    // `database_url` is a top-level key: its nested name is `DATABASE_URL` as well, so
    // `DATABASE__URL` names nothing and the key is missing.
    assert!(nested_url.is_err());
    Ok(())
}

#[test]
fn two_names_of_one_key_with_different_values_are_a_conflict() {
    let scene = Scene::new();
    let error = load(
        &scene,
        with(
            base_vars(),
            &[("DATABASE__POOL_SIZE", "1"), ("DATABASE_POOL_SIZE", "2")],
        ),
    )
    .err()
    .unwrap_or_else(|| panic!("conflicting names must fail"));
    let message = error.to_string();
    assert!(
        matches!(error.problems()[0].kind, ProblemKind::Conflict { .. }),
        "{message}"
    );
    assert!(
        message.contains("DATABASE_POOL_SIZE") && message.contains("DATABASE__POOL_SIZE"),
        "{message}"
    );
}

#[test]
fn typed_values_from_strings() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let settings = load(
        &scene,
        with(
            base_vars(),
            &[
                ("ADMIN_ENABLED", "yes"),
                ("CANARY_TENANTS", "tenant-1, tenant-2"),
                // A secret made of digits must stay a string, with its leading zeros.
                ("JWT_SECRET", "00000000000000000000000000000000001"),
            ],
        ),
    )?;
    assert!(settings.admin_enabled);
    assert_eq!(settings.canary_tenants, ["tenant-1", "tenant-2"]);
    assert_eq!(
        settings.jwt_secret.expose_secret(),
        "00000000000000000000000000000000001"
    );

    let json = load(
        &scene,
        with(base_vars(), &[("CANARY_TENANTS", r#"["a,b", "c"]"#)]),
    )?;
    assert_eq!(json.canary_tenants, ["a,b", "c"]);
    Ok(())
}

#[test]
fn unicode_values_survive_every_source() -> Result<(), ConfigError> {
    let scene = Scene::new();
    scene.write("config/default.toml", "service_name = \"酒店-查询\"\n");
    let settings = load(&scene, base_vars())?;
    assert_eq!(settings.service_name, "酒店-查询");
    let secret_file = scene.write("jwt", "密钥-🔑-0123456789abcdef0123456789abcdef\n");
    let settings = load(
        &scene,
        vec![
            ("DATABASE_URL".to_owned(), DB.to_owned()),
            (
                "JWT_SECRET_FILE".to_owned(),
                secret_file.display().to_string(),
            ),
            ("SERVICE_NAME".to_owned(), "服务".to_owned()),
        ],
    )?;
    assert_eq!(settings.service_name, "服务");
    assert_eq!(
        settings.jwt_secret.expose_secret(),
        "密钥-🔑-0123456789abcdef0123456789abcdef"
    );
    Ok(())
}

#[test]
fn empty_values_are_values() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let settings = load(
        &scene,
        with(
            base_vars(),
            &[
                ("SERVICE_NAME", ""),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                ("CANARY_TENANTS", ""),
            ],
        ),
    )?;
    assert_eq!(settings.service_name, "");
    assert_eq!(
        settings.otlp_endpoint, None,
        "an empty optional value means unset"
    );
    assert!(settings.canary_tenants.is_empty());

    let error = load(&scene, with(base_vars(), &[("PORT", "")]))
        .err()
        .unwrap_or_else(|| panic!("an empty port must fail"));
    assert_eq!(
        kinds(&error),
        [(
            "port".to_owned(),
            ProblemKind::WrongType {
                expected: "an integer".to_owned(),
                found: "an empty string".to_owned()
            }
        )]
    );
    Ok(())
}

#[test]
fn file_variables_read_the_named_file_without_its_trailing_newline() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let jwt = scene.write("jwt_secret", &format!("{JWT}\r\n"));
    let db = scene.write("db_url", DB);
    let settings = load(
        &scene,
        vec![
            ("DATABASE_URL_FILE".to_owned(), db.display().to_string()),
            ("JWT_SECRET_FILE".to_owned(), jwt.display().to_string()),
        ],
    )?;
    assert_eq!(settings.jwt_secret.expose_secret(), JWT);
    assert_eq!(settings.database_url.expose_secret(), DB);
    Ok(())
}

#[test]
fn a_missing_secret_file_names_the_variable_and_path() {
    let scene = Scene::new();
    let missing = scene.path("no-such-secret");
    let error = load(
        &scene,
        vec![
            ("DATABASE_URL".to_owned(), DB.to_owned()),
            ("JWT_SECRET_FILE".to_owned(), missing.display().to_string()),
        ],
    )
    .err()
    .unwrap_or_else(|| panic!("a missing file must fail"));
    let message = error.to_string();
    assert!(message.contains("JWT_SECRET_FILE"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(matches!(
        error.problems()[0].kind,
        ProblemKind::SecretFile { .. }
    ));
}

#[test]
fn a_missing_key_names_its_variable_and_where_to_set_it() {
    let scene = Scene::new();
    let error = load(&scene, vec![("JWT_SECRET".to_owned(), JWT.to_owned())])
        .err()
        .unwrap_or_else(|| panic!("a missing key must fail"));
    assert_eq!(
        kinds(&error),
        [("database_url".to_owned(), ProblemKind::Missing)]
    );
    let message = error.to_string();
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(message.contains("config/default.toml"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let scene = Scene::new();
    scene.write(
        "config/default.toml",
        "log_level = \"verbose\"\n[database]\npool_size = 0\n",
    );
    let error = load(&scene, vec![("PORT".to_owned(), "http".to_owned())])
        .err()
        .unwrap_or_else(|| panic!("a broken config must fail"));
    let found = kinds(&error);
    assert!(
        found.contains(&(
            "port".to_owned(),
            ProblemKind::WrongType {
                expected: "an integer".to_owned(),
                found: "a 4-character string".to_owned()
            }
        )),
        "{error}"
    );
    assert!(
        found.contains(&("database_url".to_owned(), ProblemKind::Missing)),
        "{error}"
    );
    assert!(
        found.contains(&("jwt_secret".to_owned(), ProblemKind::Missing)),
        "{error}"
    );
    assert!(
        found.contains(&(
            "log_level".to_owned(),
            ProblemKind::NotOneOf {
                allowed: vec!["error".into(), "warn".into(), "info".into(), "debug".into()]
            }
        )),
        "{error}"
    );
    assert!(
        found.contains(&(
            "database.pool_size".to_owned(),
            ProblemKind::OutOfRange {
                min: Some(1.0),
                max: Some(500.0)
            }
        )),
        "{error}"
    );
    assert_eq!(found.len(), 5, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("default.toml"),
        "the source file is named: {message}"
    );
}

#[test]
fn wrong_types_and_ranges_name_the_source_variable() {
    let scene = Scene::new();
    let error = load(
        &scene,
        with(
            base_vars(),
            &[("PORT", "70000"), ("ADMIN_ENABLED", "maybe")],
        ),
    )
    .err()
    .unwrap_or_else(|| panic!("bad values must fail"));
    let message = error.to_string();
    assert_eq!(error.problems().len(), 2, "{message}");
    assert!(
        message.contains(
            "`port` (env PORT): must be between 0 and 65535; from environment variable `PORT`"
        ),
        "{message}"
    );
    assert!(
        message.contains("`admin_enabled` (env ADMIN_ENABLED): expected true or false"),
        "{message}"
    );
}

#[test]
fn a_toml_syntax_error_gives_its_position() {
    let scene = Scene::new();
    scene.write(
        "config/default.toml",
        "port = 80\nservice_name = \"unterminated\n",
    );
    let error = load(&scene, base_vars())
        .err()
        .unwrap_or_else(|| panic!("a syntax error must fail"));
    match &error.problems()[0].kind {
        ProblemKind::FileSyntax { path, position, .. } => {
            assert!(path.ends_with("config/default.toml"));
            assert_eq!(position.map(|(line, _)| line), Some(2), "{error}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn an_unknown_app_env_is_an_error() {
    let scene = Scene::new();
    let error = load(&scene, with(base_vars(), &[("APP_ENV", "prodution")]))
        .err()
        .unwrap_or_else(|| panic!("a misspelt environment must fail"));
    assert!(
        error.to_string().contains("environment variable `APP_ENV`"),
        "{error}"
    );
    assert_eq!(error.problems()[0].kind, ProblemKind::UnknownAppEnv);
    assert_eq!(
        Loader::new()
            .vars([("APP_ENV", "prod")])
            .resolve_app_env()
            .ok(),
        Some(AppEnv::Production)
    );
}

/// A check on the kind of problem a case must produce.
type Expect = fn(&ProblemKind) -> bool;

#[test]
fn production_refuses_weak_secrets_that_development_accepts() -> Result<(), ConfigError> {
    let scene = Scene::new();
    let cases: [(&str, Expect); 5] = [
        ("", |k| *k == ProblemKind::EmptySecret),
        ("short-key", |k| {
            matches!(k, ProblemKind::TooShort { min: 32, actual: 9 })
        }),
        ("your_jwt_secret_here_xxxxxxxxxxxxxxxxxxxxx", |k| {
            *k == ProblemKind::Placeholder
        }),
        ("changeme-changeme-changeme-changeme", |k| {
            *k == ProblemKind::Placeholder
        }),
        ("your_jwt_secret_herexxxxxxxxxxxx", |k| {
            *k == ProblemKind::Placeholder
        }),
    ];
    for (secret, expected) in cases {
        let vars = with(base_vars(), &[("JWT_SECRET", secret)]);
        let dev = load(&scene, vars.clone())?;
        assert_eq!(dev.jwt_secret.expose_secret(), secret);
        let error = load(&scene, with(vars, &[("APP_ENV", "production")]))
            .err()
            .unwrap_or_else(|| panic!("production must refuse {secret:?}"));
        assert_eq!(error.app_env(), AppEnv::Production);
        assert!(expected(&error.problems()[0].kind), "{secret:?}: {error}");
    }
    let production = load(&scene, with(base_vars(), &[("APP_ENV", "production")]))?;
    assert_eq!(production.jwt_secret.expose_secret(), JWT);
    Ok(())
}

#[test]
fn production_refuses_the_example_database_url() {
    let scene = Scene::new();
    let error = load(
        &scene,
        with(
            base_vars(),
            &[
                ("APP_ENV", "production"),
                ("DATABASE_URL", "postgres://app:app@localhost:5432/app"),
            ],
        ),
    )
    .err()
    .unwrap_or_else(|| panic!("the example URL must be refused"));
    assert_eq!(
        kinds(&error),
        [("database_url".to_owned(), ProblemKind::Placeholder)]
    );
}

#[test]
fn production_refuses_a_placeholder_password_given_as_a_query_parameter() -> Result<(), ConfigError>
{
    let scene = Scene::new();
    for url in [
        "postgres://app@db:5432/app?password=password",
        "postgres://app@db:5432/app?sslmode=require&PASSWORD=changeme",
        "postgres://app@db:5432/app?pwd=your_db_password",
        "postgres://app:a-real-0ne@db:5432/app?sslpassword=secret",
        "http://ch:8123/?user=app&pass%77ord=CHANGEME",
    ] {
        let vars = with(base_vars(), &[("DATABASE_URL", url)]);
        load(&scene, vars.clone())?;
        let error = load(&scene, with(vars, &[("APP_ENV", "production")]))
            .err()
            .unwrap_or_else(|| panic!("production must refuse {url}"));
        assert_eq!(
            kinds(&error),
            [("database_url".to_owned(), ProblemKind::Placeholder)],
            "{url}"
        );
    }
    let real = "postgres://app@db:5432/app?password=Vq7-real-db-password&sslmode=require";
    let settings = load(
        &scene,
        with(
            base_vars(),
            &[("APP_ENV", "production"), ("DATABASE_URL", real)],
        ),
    )?;
    assert_eq!(settings.database_url.expose_secret(), real);
    Ok(())
}

#[test]
fn a_secret_url_masks_secret_query_parameters_in_every_form() {
    let url: SecretUrl = "postgres://app@db/app?sslmode=require&Password=s3cret&sslpassword=k3y"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let masked = "postgres://app@db/app?sslmode=require&Password=***&sslpassword=***";
    assert_eq!(url.to_string(), masked);
    assert_eq!(format!("{url:?}"), format!("{masked:?}"));
    assert_eq!(
        serde_json::to_string(&url).unwrap_or_else(|e| panic!("{e}")),
        format!("{masked:?}")
    );
    assert!(url.has_password());
    let plain: SecretUrl = "postgres://app@db/app?sslmode=require"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!plain.has_password());
}

#[test]
fn the_generated_env_example_loads_in_development_and_is_refused_in_production()
-> Result<(), ConfigError> {
    let scene = Scene::new();
    let example = env_example::<Settings>();
    scene.write(".env", &example);
    let settings = load(&scene, Vec::new())?;
    assert_eq!(settings.port, 8080);
    assert!(
        example.contains("# PostgreSQL connection string."),
        "{example}"
    );
    assert!(
        example.contains("DATABASE__POOL_SIZE") || example.contains("DATABASE_POOL_SIZE"),
        "{example}"
    );
    assert!(
        example.contains("OTEL_EXPORTER_OTLP_ENDPOINT="),
        "{example}"
    );

    // Production never reads .env: feed the same lines as real variables.
    let vars: Vec<(String, String)> = dotenvy::from_path_iter(scene.path(".env"))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|item| item.unwrap_or_else(|e| panic!("{e}")))
        .chain([("APP_ENV".to_owned(), "production".to_owned())])
        .collect();
    let error = load(&scene, vars)
        .err()
        .unwrap_or_else(|| panic!("placeholders must be refused in production"));
    let keys: Vec<String> = error.problems().iter().map(|p| p.key.clone()).collect();
    assert_eq!(keys, ["database_url", "jwt_secret"], "{error}");
    Ok(())
}

#[test]
fn an_unparsable_dotenv_line_is_reported_without_its_content() {
    let scene = Scene::new();
    scene.write(".env", "JWT_SECRET='leaked-canary-value\n");
    let error = load(&scene, Vec::new())
        .err()
        .unwrap_or_else(|| panic!("a broken .env must fail"));
    let message = error.to_string();
    assert!(message.contains(".env"), "{message}");
    assert!(!message.contains("leaked-canary-value"), "{message}");
}

fn assert_clean(what: &str, text: &str, canary: &str) {
    assert!(!text.contains(canary), "{what} leaks the secret: {text}");
}

/// Puts one known secret into every source a value can come from, provokes every error that can
/// name a value, and scans every output for it.
#[test]
// One list of every source and every kind of failure, so the count at the end covers them all.
#[allow(clippy::too_many_lines)]
fn a_secret_never_appears_in_any_output() -> Result<(), ConfigError> {
    const CANARY: &str = "CANARY-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    let scene = Scene::new();
    let secret_file = scene.write("jwt", &format!("{CANARY}\n"));
    let url = format!("postgres://app:{CANARY}@db:5432/app?sslmode=require&password={CANARY}");

    // A successful load: Debug and serialized forms of the whole config.
    let settings = load(
        &scene,
        vec![
            ("DATABASE_URL".to_owned(), url.clone()),
            (
                "JWT_SECRET_FILE".to_owned(),
                secret_file.display().to_string(),
            ),
        ],
    )?;
    assert_eq!(settings.jwt_secret.expose_secret(), CANARY);
    assert_clean("Debug", &format!("{settings:?}"), CANARY);
    assert_clean("pretty Debug", &format!("{settings:#?}"), CANARY);
    let json = serde_json::to_string(&settings).unwrap_or_else(|e| panic!("{e}"));
    assert_clean("serialized", &json, CANARY);
    assert!(
        json.contains("postgres://app:***@db:5432/app?sslmode=require&password=***"),
        "{json}"
    );

    // Failing loads, with the canary in every source and in every kind of bad value.
    let mut reports: Vec<String> = Vec::new();
    let mut record = |scene: &Scene, vars: Vec<(String, String)>| {
        if let Err(error) = load(scene, vars) {
            reports.push(error.to_string());
            reports.push(format!("{error:?}"));
        } else {
            panic!("expected this load to fail");
        }
    };
    // In a variable: wrong type, out of range, not an allowed value, not a URL.
    record(&scene, with(base_vars(), &[("PORT", CANARY)]));
    record(&scene, with(base_vars(), &[("LOG_LEVEL", CANARY)]));
    record(
        &scene,
        with(
            base_vars(),
            &[("DATABASE_URL", &format!("not a url {CANARY}"))],
        ),
    );
    record(
        &scene,
        with(base_vars(), &[("CANARY_TENANTS", &format!("[{CANARY}"))]),
    );
    // Conflicts between a variable and a file, and between two names.
    record(
        &scene,
        with(
            base_vars(),
            &[
                ("JWT_SECRET", "other"),
                ("JWT_SECRET_FILE", &secret_file.display().to_string()),
            ],
        ),
    );
    record(
        &scene,
        with(
            base_vars(),
            &[("DATABASE__POOL_SIZE", CANARY), ("DATABASE_POOL_SIZE", "3")],
        ),
    );
    // A URL that does not parse, with the canary as a query parameter.
    record(
        &scene,
        with(
            base_vars(),
            &[(
                "DATABASE_URL",
                &format!("postgres://app@db:99999/app?password={CANARY}"),
            )],
        ),
    );
    // The production guard.
    record(
        &scene,
        with(
            base_vars(),
            &[("APP_ENV", "production"), ("JWT_SECRET", &CANARY[..20])],
        ),
    );
    record(
        &scene,
        with(
            base_vars(),
            &[
                ("APP_ENV", "production"),
                ("DATABASE_URL", &url),
                ("JWT_SECRET", ""),
            ],
        ),
    );
    record(&scene, with(base_vars(), &[("APP_ENV", CANARY)]));
    // In files: a TOML value of the wrong type, a TOML syntax error, a .env syntax error.
    let toml = scene.write("config/test.toml", &format!("port = \"{CANARY}\"\n"));
    record(&scene, with(base_vars(), &[("APP_ENV", "test")]));
    std::fs::write(&toml, format!("jwt_secret = \"{CANARY}\nport = 1\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    record(&scene, with(base_vars(), &[("APP_ENV", "test")]));
    scene.write(".env", &format!("JWT_SECRET=\"{CANARY}\nPORT={CANARY}\n"));
    record(&scene, Vec::new());
    std::fs::remove_file(scene.path(".env")).unwrap_or_else(|e| panic!("{e}"));
    scene.write(".env", &format!("PORT={CANARY}\n"));
    record(&scene, Vec::new());

    assert_eq!(reports.len(), 28);
    for report in &reports {
        assert_clean("error report", report, CANARY);
    }
    Ok(())
}

#[test]
fn file_paths_in_reports_are_the_paths_given() {
    let scene = Scene::new();
    scene.write("config/default.toml", "port = \"eighty\"\n");
    let error = load(&scene, base_vars())
        .err()
        .unwrap_or_else(|| panic!("a string port must fail"));
    let source = error.problems()[0].source.clone().unwrap_or_default();
    assert!(
        Path::new(source.trim_matches(|c| c != '/')).ends_with("default.toml")
            || source.contains("default.toml"),
        "{source}"
    );
}

#[test]
fn optional_keys_without_a_default_stay_unset_in_the_env_example() -> Result<(), ConfigError> {
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    struct Optional {
        /// Whether each request is logged; on when unset.
        access_log: Option<bool>,
        /// Export timeout in milliseconds; the exporter's own when unset.
        export_timeout_ms: Option<u64>,
        /// Retries; 3 when unset.
        #[serde(default = "three")]
        retries: u32,
    }
    fn three() -> u32 {
        3
    }
    let example = groundwork_config::env_example::<Optional>();
    assert!(example.contains("\nACCESS_LOG=\n"), "{example}");
    assert!(example.contains("\nEXPORT_TIMEOUT_MS=\n"), "{example}");
    assert!(example.contains("\nRETRIES=3\n"), "{example}");
    let scene = Scene::new();
    scene.write(".env", &example);
    let loaded: Optional = scene.loader(Vec::new()).load()?;
    assert_eq!(loaded.access_log, None);
    assert_eq!(loaded.export_timeout_ms, None);
    assert_eq!(loaded.retries, 3);
    Ok(())
}

/// A value that only its own parser refuses: the schema sees a string.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
struct Region(String);

impl TryFrom<String> for Region {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.len() == 2 && text.chars().all(|c| c.is_ascii_lowercase()) {
            Ok(Self(text))
        } else {
            Err("expected two lowercase letters".to_owned())
        }
    }
}

impl From<Region> for String {
    fn from(region: Region) -> Self {
        region.0
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Regions {
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default)]
    level: Level,
    home_region: Option<Region>,
    #[serde(default)]
    backup: BackupRegion,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
struct BackupRegion {
    region: Option<Region>,
}

fn region_problems(vars: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    Loader::new()
        .no_dotenv()
        .vars(vars.iter().copied())
        .load::<Regions>()
        .err()
        .map(|error| {
            error
                .problems()
                .iter()
                .map(|p| (p.key.clone(), p.env_var.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn values_their_own_parser_refuses_are_in_the_one_report_with_the_schema_problems() {
    // Two values only deserialization refuses, each named with its variable.
    let problems = region_problems(&[("HOME_REGION", "Mars"), ("BACKUP_REGION", "eu-west")]);
    assert_eq!(
        problems,
        [
            ("home_region".to_owned(), Some("HOME_REGION".to_owned())),
            ("backup.region".to_owned(), Some("BACKUP_REGION".to_owned())),
        ]
    );
    // Next to problems the schema finds, all four are reported at once.
    let problems = region_problems(&[
        ("PORT", "eighty"),
        ("LEVEL", "verbose"),
        ("HOME_REGION", "Mars"),
        ("BACKUP_REGION", "eu-west"),
    ]);
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["port", "level", "home_region", "backup.region"]);
    let error = Loader::new()
        .no_dotenv()
        .vars([("PORT", "eighty"), ("HOME_REGION", "Mars")])
        .load::<Regions>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("(2 problems)") && error.contains("expected two lowercase letters"),
        "{error}"
    );
    assert!(
        !error.contains("Mars"),
        "the value is not repeated:\n{error}"
    );
    // Good values still load.
    let loaded = Loader::new()
        .no_dotenv()
        .vars([("HOME_REGION", "eu"), ("BACKUP_REGION", "us")])
        .load::<Regions>();
    assert!(
        loaded.as_ref().is_ok_and(|r| {
            r.home_region.as_ref().map(|r| r.0.as_str()) == Some("eu")
                && r.backup.region.as_ref().map(|r| r.0.as_str()) == Some("us")
                && r.port == 8080
                && r.level == Level::Info
        }),
        "{loaded:?}"
    );
}
