//! Showing and following the services' log files, each line prefixed with its service.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Result;

use super::{StackService, pids};

/// Options of `cargo xtask logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsOptions {
    /// Only this service (api-gateway, order-worker, analytics-ingest)
    pub(crate) service: Option<String>,
    /// Keep following the logs until Ctrl-C
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Lines to show from the end of each log
    #[arg(short = 'n', long, default_value_t = 50)]
    pub(crate) lines: usize,
}

pub(super) fn show(dir: &Path, services: &[StackService], options: &LogsOptions) -> Result<()> {
    let colour = super::colour();
    let mut out = std::io::stdout().lock();
    for service in services {
        for line in tail(dir, *service, options.lines).lines() {
            writeln!(out, "{}{line}", prefix(*service, colour))?;
        }
    }
    drop(out);
    if options.follow {
        follow(dir, services, false)?;
    }
    Ok(())
}

/// The last `lines` lines of the service's log.
pub(super) fn tail(dir: &Path, service: StackService, lines: usize) -> String {
    let text = std::fs::read(dir.join(format!("{}.log", service.name))).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Prints what is appended to the logs, as it arrives. With `until_exit`, returns once every
/// service has exited; otherwise runs until interrupted.
pub(super) fn follow(dir: &Path, services: &[StackService], until_exit: bool) -> Result<()> {
    let colour = super::colour();
    let mut offsets: Vec<u64> = services
        .iter()
        .map(|service| {
            std::fs::metadata(dir.join(format!("{}.log", service.name))).map_or(0, |m| m.len())
        })
        .collect();
    let mut partial: Vec<String> = vec![String::new(); services.len()];
    loop {
        let mut out = std::io::stdout().lock();
        for ((service, offset), pending) in services.iter().zip(&mut offsets).zip(&mut partial) {
            let Ok(mut file) = File::open(dir.join(format!("{}.log", service.name))) else {
                continue;
            };
            let mut fresh = Vec::new();
            if file.seek(SeekFrom::Start(*offset)).is_ok() && file.read_to_end(&mut fresh).is_ok() {
                *offset += fresh.len() as u64;
                pending.push_str(&String::from_utf8_lossy(&fresh));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    writeln!(out, "{}{}", prefix(*service, colour), line.trim_end())?;
                }
            }
        }
        out.flush()?;
        drop(out);
        if until_exit
            && services
                .iter()
                .all(|service| pids::running(dir, *service).is_none())
        {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn prefix(service: StackService, colour: bool) -> String {
    if colour {
        format!("\x1b[{}m{:>16} |\x1b[0m ", service.colour, service.name)
    } else {
        format!("{:>16} | ", service.name)
    }
}
