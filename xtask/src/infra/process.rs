//! Running the commands that install, start and stop servers, and looking after their processes.
//!
//! Every command we run gets its standard input from `/dev/null` and writes its output to a log file,
//! never to our own stdout/stderr: daemons inherit the descriptors of the command that started them,
//! and one holding CI's output pipe would keep the CI step from ever finishing.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Whether we run as root, which decides whether we can install packages and must switch users.
pub(super) fn is_root() -> bool {
    static IS_ROOT: OnceLock<bool> = OnceLock::new();
    // std has no getuid and the crate forbids unsafe code, so ask `id` once.
    *IS_ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|output| output.status.success() && output.stdout.trim_ascii() == b"0")
    })
}

/// A command that runs `program` as `user` when we are root, and as ourselves otherwise: servers such
/// as Postgres refuse to run as root, while a developer without root owns the files anyway.
pub(super) fn as_user(user: &str, program: impl AsRef<OsStr>) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Gives `dir` and everything under it to `user` when we are root (otherwise we own it already).
pub(super) fn chown(user: &str, dir: &Path, log: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    run_logged(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:"))
            .arg(dir),
        log,
    )
}

/// Fails with a hint when `user` cannot write to `dir`, which happens when a parent directory of the
/// target directory is closed to other users (a home directory with mode 0700, for instance).
pub(super) fn ensure_writable_by(user: &str, dir: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let writable = as_user(user, "test")
        .arg("-w")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !writable {
        bail!(
            "user {user} cannot write to {}: every parent directory must be searchable by others \
             (chmod o+x), or set CARGO_TARGET_DIR to a directory under /tmp",
            dir.display()
        );
    }
    Ok(())
}

/// Runs `command` to completion with its output appended to `log`, failing with the log's path when it
/// does not succeed.
pub(super) fn run_logged(command: &mut Command, log: &Path) -> Result<()> {
    let described = describe(command);
    let command = &mut without_inherited_fds(command);
    let (stdout, stderr) = open_log(log)?;
    let mut header = stdout
        .try_clone()
        .with_context(|| format!("cannot write to {}", log.display()))?;
    writeln!(header, "$ {described}")
        .with_context(|| format!("cannot write to {}", log.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .with_context(|| format!("cannot run `{described}`"))?;
    if !status.success() {
        bail!(
            "`{described}` failed ({status}); its output is in {}",
            log.display()
        );
    }
    Ok(())
}

/// `command`, run through a shell that first closes every descriptor above stderr.
///
/// Daemons started here outlive xtask. Rust opens its own descriptors close-on-exec, but whatever
/// launched xtask (a CI runner, an editor, a terminal multiplexer) may have handed down an open pipe;
/// a daemon holding it keeps that launcher waiting for an end-of-file that never comes. `exec` keeps
/// the PID, so PID files written for the child stay right.
pub(super) fn without_inherited_fds(command: &Command) -> Command {
    const CLOSE_AND_EXEC: &str = r#"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done 2>/dev/null; exec "$@""#;
    let mut wrapped = Command::new("bash");
    wrapped
        .arg("-c")
        .arg(CLOSE_AND_EXEC)
        .arg("xtask-daemon")
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Prints `command` and then runs it like [`run_logged`]; used for installs, which change the machine
/// and so should be visible.
pub(super) fn run_printed(command: &mut Command, log: &Path) -> Result<()> {
    println!("$ {}", describe(command));
    run_logged(command, log)
}

/// Opens `log` for appending, twice, for a child's stdout and stderr.
pub(super) fn open_log(log: &Path) -> Result<(File, File)> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let stdout = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let stderr = stdout
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    Ok((stdout, stderr))
}

/// The command as a shell would show it, environment overrides first.
fn describe(command: &Command) -> String {
    let envs = command.get_envs().filter_map(|(key, value)| {
        value.map(|value| format!("{}={}", key.to_string_lossy(), value.to_string_lossy()))
    });
    let program = std::iter::once(command.get_program().to_string_lossy().into_owned());
    let args = command.get_args().map(|arg| {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains([' ', '\'', '"', '[', '*', '$', ';', '&']) {
            sh_quote(&arg)
        } else {
            arg.into_owned()
        }
    });
    envs.chain(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `value` in single quotes, safe to paste into a POSIX shell.
pub(super) fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The executable `name` from `PATH`, or from the `sbin` directories that a non-root `PATH` lacks but
/// where Debian puts servers.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(super) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The PID in the first line of `pid_file`, if the file exists and holds one.
pub(super) fn read_pid(pid_file: &Path) -> Option<u32> {
    let text = fs::read_to_string(pid_file).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live process whose command line mentions `name`. The name check keeps a stale PID
/// file from pointing us at an unrelated process that happens to have been given the same PID.
pub(crate) fn process_runs(pid: u32, name: &str) -> bool {
    if !process_alive(pid) {
        return false;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(name),
        // Without /proc (not Linux) liveness is all we can know.
        Err(_) => true,
    }
}

/// Whether `pid` is a live process (not a zombie), whatever it runs.
pub(super) fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited and only waits for its parent to collect it; count it as gone.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => signal(pid, "0"),
    }
}

fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Stops `pid` with SIGTERM and waits for it to exit, resorting to SIGKILL after `grace`.
pub(crate) fn terminate(pid: u32, grace: Duration) -> Result<()> {
    signal(pid, "TERM");
    if wait_for_exit(pid, grace) {
        return Ok(());
    }
    signal(pid, "KILL");
    if wait_for_exit(pid, Duration::from_secs(5)) {
        return Ok(());
    }
    bail!("process {pid} is still running after SIGTERM and SIGKILL")
}

fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
    true
}
