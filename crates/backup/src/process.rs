//! Child programs (`pg_dump`, `pg_restore`, `redis-cli`) run on blocking threads.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use groundwork_config::ExposeSecret as _;
use secrecy::SecretString;

use crate::BackupError;

/// `url` without its userinfo password and secret query parameters, ready for a child's command
/// line, and the secrets taken off it (see [`groundwork_config::split_url_secrets`]).
pub(crate) fn take_secrets(
    url: &url::Url,
    what: &'static str,
) -> Result<(String, Vec<(String, SecretString)>), BackupError> {
    let (url, secrets) = groundwork_config::split_url_secrets(url.as_str())
        .map_err(|err| BackupError::config(what, err.to_string()))?;
    let secrets = secrets
        .into_iter()
        .map(|(name, value)| (name, SecretString::from(value.expose_secret().to_owned())))
        .collect();
    Ok((url, secrets))
}

/// The last secret named `name` in `secrets`: a query parameter wins over the userinfo, as
/// libpq reads URI parameters after the userinfo.
pub(crate) fn last_secret(
    secrets: &[(String, SecretString)],
    names: &[&str],
) -> Option<SecretString> {
    secrets
        .iter()
        .rev()
        .find(|(name, _)| names.contains(&name.as_str()))
        .map(|(_, value)| value.clone())
}

/// The end of a child's error output kept for error messages.
const STDERR_TAIL: usize = 4096;

/// A running child whose error output is collected on a thread, killed on drop unless waited.
pub(crate) struct ChildGuard {
    program: &'static str,
    child: Option<Child>,
    stderr: Option<JoinHandle<String>>,
}

impl ChildGuard {
    /// Spawns `command` with stderr captured; stdin and stdout as the command sets them.
    pub(crate) fn spawn(program: &'static str, command: &mut Command) -> Result<Self, BackupError> {
        let mut child = command.stderr(Stdio::piped()).spawn().map_err(|err| {
            BackupError::program(
                program,
                format!("cannot start it ({err}); install it or pass its path"),
            )
        })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let _ = pipe.read_to_end(&mut all);
                let start = all.len().saturating_sub(STDERR_TAIL);
                String::from_utf8_lossy(&all[start..]).trim().to_owned()
            })
        });
        Ok(Self {
            program,
            child: Some(child),
            stderr,
        })
    }

    pub(crate) fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Kills the child (it has not finished its work) and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the child; a non-zero exit becomes an error carrying its error output.
    pub(crate) fn wait_success(mut self) -> Result<String, BackupError> {
        let status = match self.child.take() {
            Some(mut child) => child.wait().map_err(|err| {
                BackupError::program(self.program, format!("cannot wait for it: {err}"))
            })?,
            None => return Err(BackupError::program(self.program, "it was stopped")),
        };
        let stderr = self.stderr_text();
        check_status(self.program, status, &stderr)?;
        Ok(stderr)
    }

    /// The error output so far (waits for the pipe to close, so call after the child ended).
    pub(crate) fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }

    /// Waits for an already failing child and describes how it failed.
    #[cfg(feature = "postgres")]
    pub(crate) fn failure(mut self, context: &str) -> BackupError {
        let status = self.child.take().and_then(|mut child| child.wait().ok());
        let stderr = self.stderr_text();
        let detail = match status {
            Some(status) if !status.success() => describe(status, &stderr),
            _ => format!("{context}{}", tail(&stderr)),
        };
        BackupError::program(self.program, detail)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn check_status(
    program: &'static str,
    status: ExitStatus,
    stderr: &str,
) -> Result<(), BackupError> {
    if status.success() {
        Ok(())
    } else {
        Err(BackupError::program(program, describe(status, stderr)))
    }
}

fn describe(status: ExitStatus, stderr: &str) -> String {
    format!("{status}{}", tail(stderr))
}

fn tail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The first line of `<program> --version`.
pub(crate) fn program_version(
    program: &'static str,
    path: &std::path::Path,
) -> Result<String, BackupError> {
    let output = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| {
            BackupError::program(
                program,
                format!(
                    "cannot start {} ({err}); install it or pass its path",
                    path.display()
                ),
            )
        })?;
    if !output.status.success() {
        return Err(BackupError::program(
            program,
            format!("--version: {}", output.status),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Runs `command` as `program` and writes `plain` into its standard input, returning the bytes
/// written once it exited successfully. A program that stops reading has failed and says why; a
/// read error on `plain` (a damaged `stream`) kills the program before its input is closed, so a
/// restore running in one transaction rolls back instead of committing a truncated input.
#[cfg(feature = "postgres")]
pub(crate) fn feed_child(
    program: &'static str,
    command: &mut Command,
    plain: &mut dyn Read,
    stream: &str,
) -> Result<u64, BackupError> {
    let mut child = ChildGuard::spawn(program, command)?;
    let Some(mut stdin) = child.child_mut().and_then(|c| c.stdin.take()) else {
        return Err(BackupError::program(program, "its input was not connected"));
    };
    match crate::pipeline::pump(plain, &mut stdin) {
        Ok(raw) => {
            drop(stdin);
            child.wait_success()?;
            Ok(raw)
        }
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            drop(stdin);
            Err(child.failure("it stopped reading its input"))
        }
        Err(err) => {
            child.kill();
            drop(stdin);
            Err(BackupError::Decode {
                object: stream.into(),
                reason: err.to_string(),
            })
        }
    }
}
