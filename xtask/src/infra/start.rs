//! Starting a service's own server on its dedicated port and waiting until it answers.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::probe::{self, Endpoint};
use super::{
    Origin, Running, Service, Spec, commands_log, own_pid, process, remove_stale_pid_file,
};

pub(super) fn server(service: Service, infra_dir: &Path, running: &[Running]) -> Result<Running> {
    let spec = service.spec();
    let dir = infra_dir.join(spec.name);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // No live server owns this PID file (`lookup` checked), and some servers refuse to start over one.
    let pid_file = dir.join(spec.pid_file);
    remove_stale_pid_file(&pid_file)?;

    println!(
        "starting {} on 127.0.0.1:{} in {}",
        spec.name,
        spec.dedicated_port,
        dir.display()
    );
    service
        .start(&dir, running)
        .with_context(|| format!("cannot start {}; see {}", spec.name, log_hint(spec, &dir)))?;
    wait_until_answers(spec, &dir)?;
    // Redis listens before it writes its PID file, so give the file a moment to appear.
    let pid_deadline = Instant::now() + Duration::from_secs(5);
    let mut pid = own_pid(spec, &dir);
    while pid.is_none() && Instant::now() < pid_deadline {
        thread::sleep(Duration::from_millis(50));
        pid = own_pid(spec, &dir);
    }
    let pid = pid.with_context(|| {
        format!(
            "{} answers, but {} names no running {} process",
            spec.name,
            pid_file.display(),
            spec.name
        )
    })?;
    Ok(Running {
        service,
        url: (spec.url)(spec.dedicated_port),
        origin: Origin::Started { pid },
    })
}

/// Polls the dedicated port until the server answers, its process dies, or the start timeout passes.
pub(super) fn wait_until_answers(spec: &Spec, dir: &Path) -> Result<()> {
    // Every server writes its PID file early in start-up (xtask writes moto's), so a missing one means
    // a daemonizing server failed before or right after writing it (clickhouse when a port is taken);
    // there is no other way to learn the PID of what `--daemon` forked.
    const PID_FILE_GRACE: Duration = Duration::from_secs(15);
    let endpoint = Endpoint::local(spec.dedicated_port);
    let started = Instant::now();
    let deadline = started + spec.start_timeout;
    let mut pid_seen = false;
    loop {
        if probe::answers(spec.probe, &endpoint) {
            return Ok(());
        }
        match process::read_pid(&dir.join(spec.pid_file)) {
            // Liveness alone: the PID is this start's (a stale file was removed before it), and
            // right after `spawn` the kernel may still be finishing the exec, when
            // /proc/PID/cmdline reads empty and a check of the command line would call a starting
            // server dead.
            Some(pid) if !process::process_alive(pid) => bail!(
                "{} (pid {pid}) exited while starting; see {}",
                spec.name,
                log_hint(spec, dir)
            ),
            Some(_) => pid_seen = true,
            None if pid_seen || started.elapsed() >= PID_FILE_GRACE => bail!(
                "{} exited while starting (no PID file at {}); see {}",
                spec.name,
                dir.join(spec.pid_file).display(),
                log_hint(spec, dir)
            ),
            None => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer on 127.0.0.1:{} within {} s; see {}",
                spec.name,
                spec.dedicated_port,
                spec.start_timeout.as_secs(),
                log_hint(spec, dir)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn log_hint(spec: &Spec, dir: &Path) -> String {
    format!(
        "{} and {}",
        dir.join(spec.server_log).display(),
        commands_log(dir).display()
    )
}
