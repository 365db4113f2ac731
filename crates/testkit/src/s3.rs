//! A fresh S3 bucket per test on a local S3-compatible server.

use std::fmt;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TestkitError;
use crate::cleanup::{self, CONNECT_TIMEOUT};
use crate::infra_env::{InfraEnv, Service, UrlParts};

/// Credentials the local S3 server (moto) accepts; it does not check them.
const ACCESS_KEY_ID: &str = "test";
const SECRET_ACCESS_KEY: &str = "test";
const REGION: &str = "us-east-1";

/// An empty bucket (`gw-test-<random>`) of its own for one test; its objects and the bucket are
/// deleted on drop.
///
/// `object_store` cannot create or delete buckets, so the testkit sends the unsigned
/// `PUT /<bucket>` and `DELETE /<bucket>` requests that a local server such as moto accepts.
/// That is why only plain `http://` endpoints are supported.
pub struct TestBucket {
    endpoint: String,
    bucket: String,
    store: AmazonS3,
    cleaned: bool,
}

impl TestBucket {
    /// Creates a bucket on the server found by [`InfraEnv::discover`] (`S3_ENDPOINT`).
    pub async fn create() -> Result<Self, TestkitError> {
        let env = InfraEnv::discover()?;
        Self::create_on(&env.url(Service::S3)).await
    }

    /// Creates a bucket on the server at `endpoint` (`http://host:port`).
    pub async fn create_on(endpoint: &str) -> Result<Self, TestkitError> {
        let bucket = format!("gw-test-{}", cleanup::unique_token());
        let status = bucket_request(endpoint, "PUT", &bucket)
            .await?
            .map_err(|err| TestkitError::unreachable(Service::S3, endpoint, err))?;
        if !(200..300).contains(&status) {
            return Err(TestkitError::server(
                Service::S3,
                endpoint,
                format!("creating bucket {bucket}"),
                format!("http status {status}"),
            ));
        }
        let store = match build_store(endpoint, &bucket) {
            Ok(store) => store,
            Err(err) => {
                let _ = bucket_request(endpoint, "DELETE", &bucket).await;
                return Err(err);
            }
        };
        Ok(Self {
            endpoint: endpoint.to_owned(),
            bucket,
            store,
            cleaned: false,
        })
    }

    /// A store for this bucket.
    pub fn store(&self) -> &AmazonS3 {
        &self.store
    }

    /// The bucket name, `gw-test-<random>`.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Deletes every object and the bucket now and reports failure, instead of on drop where
    /// errors can only be printed.
    pub async fn cleanup(mut self) -> Result<(), TestkitError> {
        self.cleaned = true;
        delete_bucket(&self.store, &self.endpoint, &self.bucket).await
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let endpoint = self.endpoint.clone();
        let bucket = self.bucket.clone();
        cleanup::run_in_drop(&format!("s3 bucket {bucket}"), move || async move {
            // The test's store holds an HTTP client tied to the test's runtime, blocked here.
            let store = build_store(&endpoint, &bucket)?;
            delete_bucket(&store, &endpoint, &bucket).await
        });
    }
}

impl fmt::Debug for TestBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBucket")
            .field("endpoint", &groundwork_config::redact_url(&self.endpoint))
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn build_store(endpoint: &str, bucket: &str) -> Result<AmazonS3, TestkitError> {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(bucket)
        .with_region(REGION)
        .with_access_key_id(ACCESS_KEY_ID)
        .with_secret_access_key(SECRET_ACCESS_KEY)
        .build()
        .map_err(|err| TestkitError::invalid_url(Service::S3, endpoint, err.to_string()))
}

async fn delete_bucket(store: &AmazonS3, endpoint: &str, bucket: &str) -> Result<(), TestkitError> {
    let failed = |action: &str, err: object_store::Error| {
        TestkitError::server(
            Service::S3,
            endpoint,
            format!("{action} in bucket {bucket}"),
            err,
        )
    };
    // Walk the bucket like a directory tree; `list_with_delimiter` needs no stream handling.
    let mut prefixes: Vec<Option<Path>> = vec![None];
    while let Some(prefix) = prefixes.pop() {
        let listing = store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|err| failed("listing objects", err))?;
        for object in listing.objects {
            match store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(failed("deleting objects", err)),
            }
        }
        prefixes.extend(listing.common_prefixes.into_iter().map(Some));
    }

    let status = bucket_request(endpoint, "DELETE", bucket)
        .await?
        .map_err(|err| TestkitError::unreachable(Service::S3, endpoint, err))?;
    if (200..300).contains(&status) || status == 404 {
        return Ok(());
    }
    Err(TestkitError::server(
        Service::S3,
        endpoint,
        format!("deleting bucket {bucket}"),
        format!("http status {status}"),
    ))
}

/// Sends an unsigned `method /<bucket>` to the endpoint and returns the HTTP status.
///
/// The outer error means the endpoint cannot be used at all; the inner one that the server could
/// not be reached, which the caller reports as such.
async fn bucket_request(
    endpoint: &str,
    method: &str,
    bucket: &str,
) -> Result<Result<u16, std::io::Error>, TestkitError> {
    let parts = UrlParts::parse(endpoint)
        .filter(|parts| parts.scheme == "http://" && !parts.host_port.is_empty())
        .ok_or_else(|| {
            TestkitError::invalid_url(Service::S3, endpoint, "expected http://host[:port]")
        })?;
    let host_port = parts.host_port;
    let address = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:80")
    };
    let base_path = parts.path.trim_end_matches('/');
    let request = format!(
        "{method} {base_path}/{bucket} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );

    let exchange = async {
        let mut stream = TcpStream::connect(&address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        parse_status(&response).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the response is not HTTP/1.x",
            )
        })
    };
    Ok(tokio::time::timeout(CONNECT_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            ))
        }))
}

/// The status code of an `HTTP/1.x <code> <reason>` response.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line_end = response.iter().position(|&b| b == b'\r')?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn status_is_read_from_the_status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 404 Not Found\r\nX: y\r\n"),
            Some(404)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
