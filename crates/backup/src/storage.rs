//! Where backups live: a local directory or an S3-compatible bucket, addressed by URL.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::{ExposeSecret, SecretString};

use crate::BackupError;

/// Settings for `s3://` storage URLs; ignored for `file://`.
///
/// The library reads no environment variables: the `groundwork-backup` binary fills these from
/// the standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION` and `AWS_ENDPOINT_URL` variables.
#[derive(Clone, Default)]
pub struct S3Options {
    /// The endpoint of an S3-compatible service (Cloudflare R2, `MinIO`, Aliyun OSS); `None` for
    /// AWS S3.
    pub endpoint: Option<String>,
    /// The region; `us-east-1` when `None` (R2 accepts `auto`).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<SecretString>,
    /// A session token for temporary credentials.
    pub session_token: Option<SecretString>,
    /// Allow `http://` endpoints (local test servers only).
    pub allow_http: bool,
    /// Address the bucket in the path (`endpoint/bucket/key`) instead of the host name, as `MinIO`
    /// and most self-hosted services need.
    pub path_style: bool,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// An opened backup location.
///
/// Backups are laid out as `<kind>/<source>/<id>/` holding `started.json` (written first), the
/// data object(s) and `manifest.json` (written last).
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    location: String,
    local_root: Option<PathBuf>,
    remote: bool,
}

impl Storage {
    /// Opens `file:///absolute/dir` (created if missing) or `s3://bucket[/prefix]`.
    ///
    /// In a local directory, the directories created for backups are 0700 and the files 0600,
    /// whatever the umask; a relative `file:` URL is refused.
    pub fn open(url: &str, s3: &S3Options) -> Result<Self, BackupError> {
        let parsed = url::Url::parse(url).map_err(|err| {
            BackupError::config(
                "storage url",
                format!(
                    "{err}; use file:///absolute/dir or s3://bucket/prefix (got {})",
                    groundwork_config::redact_url(url)
                ),
            )
        })?;
        match parsed.scheme() {
            "file" => {
                let dir = local_dir(url, &parsed)?;
                let store = crate::local::PrivateFileSystem::open(&dir)?;
                Ok(Self {
                    store: Arc::new(store),
                    location: format!("file://{}", dir.display()),
                    local_root: Some(dir),
                    remote: false,
                })
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|bucket| !bucket.is_empty())
                    .ok_or_else(|| {
                        BackupError::config(
                            "storage url",
                            "s3:// URLs need a bucket: s3://bucket/prefix",
                        )
                    })?
                    .to_owned();
                let secret_param = parsed
                    .query_pairs()
                    .any(|(name, _)| groundwork_config::is_secret_query_param(&name));
                if !parsed.username().is_empty() || parsed.password().is_some() || secret_param {
                    return Err(BackupError::config(
                        "storage url",
                        "do not put credentials in the storage URL; use the standard AWS variables",
                    ));
                }
                let prefix = parsed.path().trim_matches('/').to_owned();
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key_id) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key_id);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose_secret());
                }
                if let Some(token) = &s3.session_token {
                    builder = builder.with_token(token.expose_secret());
                }
                // The builder's errors name options, never their values.
                let s3_store = builder
                    .build()
                    .map_err(|err| BackupError::config("s3 settings", err.to_string()))?;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3_store)
                } else {
                    Arc::new(PrefixStore::new(s3_store, prefix.as_str()))
                };
                let location = if prefix.is_empty() {
                    format!("s3://{bucket}")
                } else {
                    format!("s3://{bucket}/{prefix}")
                };
                Ok(Self {
                    store,
                    location,
                    local_root: None,
                    remote: true,
                })
            }
            other => Err(BackupError::config(
                "storage url",
                format!(
                    "unsupported scheme {other}://; use file:///absolute/dir or s3://bucket/prefix"
                ),
            )),
        }
    }

    /// Wraps any object store, e.g. one an application already configured; `location` is how
    /// it appears in messages.
    pub fn from_store(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        Self {
            store,
            location: location.into(),
            local_root: None,
            remote: true,
        }
    }

    /// The location as given, without credentials.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The underlying object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Whether this is a remote store, where multipart parts must be at least 5 MiB.
    pub(crate) fn is_remote(&self) -> bool {
        self.remote
    }

    pub(crate) async fn put_json(
        &self,
        path: &Path,
        value: &impl serde::Serialize,
    ) -> Result<(), BackupError> {
        let mut body = serde_json::to_vec_pretty(value).map_err(|err| BackupError::Pipeline {
            action: "serializing json",
            source: err.into(),
        })?;
        body.push(b'\n');
        self.store
            .put(path, PutPayload::from(body))
            .await
            .map_err(|err| BackupError::storage("writing", path.to_string(), err))?;
        Ok(())
    }

    pub(crate) async fn get_bytes(&self, path: &Path) -> Result<Vec<u8>, BackupError> {
        let result = self
            .store
            .get(path)
            .await
            .map_err(|err| BackupError::storage("reading", path.to_string(), err))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|err| BackupError::storage("reading", path.to_string(), err))?;
        Ok(bytes.to_vec())
    }

    pub(crate) async fn list_all(
        &self,
        prefix: Option<&Path>,
    ) -> Result<Vec<ObjectMeta>, BackupError> {
        let mut stream = self.store.list(prefix);
        let mut objects = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|err| {
                BackupError::storage(
                    "listing",
                    prefix.map_or_else(String::new, ToString::to_string),
                    err,
                )
            })?;
            objects.push(meta);
        }
        Ok(objects)
    }

    /// Deletes every object under `dir` (a backup's directory); on local storage also the
    /// directory itself, which removes staging files of uploads a killed process left behind.
    pub(crate) async fn delete_dir(
        &self,
        dir: &Path,
        first: Option<&Path>,
    ) -> Result<(), BackupError> {
        // The manifest goes first: an interrupted delete leaves an incomplete backup, which
        // nobody restores and the next prune removes, never a listed backup with missing data.
        if let Some(first) = first {
            self.delete_object(first).await?;
        }
        for meta in self.list_all(Some(dir)).await? {
            self.delete_object(&meta.location).await?;
        }
        if let Some(root) = &self.local_root {
            let mut on_disk = root.clone();
            for part in dir.parts() {
                on_disk.push(part.as_ref());
            }
            match std::fs::remove_dir_all(&on_disk) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BackupError::Io {
                        action: "remove backup directory",
                        path: on_disk.display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn delete_object(&self, path: &Path) -> Result<(), BackupError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(BackupError::storage("deleting", path.to_string(), err)),
        }
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The directory of a `file:` URL. `file:backups` parses as `file:///backups`: only a path
/// written with its leading `/` is taken, never a relative one quietly moved to the root.
fn local_dir(url: &str, parsed: &url::Url) -> Result<PathBuf, BackupError> {
    let path_given = url.trim().split_once(':').map_or("", |(_, rest)| rest);
    parsed
        .to_file_path()
        .ok()
        .filter(|_| path_given.starts_with('/'))
        .ok_or_else(|| {
            BackupError::config(
                "storage url",
                format!(
                    "file: URLs need an absolute path, like file:///var/backups (got {})",
                    groundwork_config::redact_url(url)
                ),
            )
        })
}

/// Decodes `%XX` escapes of a URL component (user names, passwords, database names); an escape
/// that is not two hex digits stays as written, bytes that are not UTF-8 become U+FFFD.
pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::{S3Options, Storage};
    use crate::BackupError;

    #[test]
    fn relative_file_urls_are_refused_and_create_nothing() {
        let name = format!("groundwork-relative-{}", std::process::id());
        for url in [
            format!("file:{name}"),
            format!("file:./{name}"),
            format!("file:{name}/backups"),
        ] {
            let opened = Storage::open(&url, &S3Options::default());
            assert!(
                matches!(&opened, Err(BackupError::Config { reason, .. }) if reason.contains("absolute")),
                "{url}: {opened:?}"
            );
            let taken_as = std::path::Path::new("/").join(&name);
            assert!(!taken_as.exists(), "{url} created {}", taken_as.display());
        }
    }
}
