//! Finding a server that answers for a service: at its environment variable's URL, on its
//! standard port, or one that an earlier `infra up` started.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::probe::{self, Endpoint};
use super::{Service, Spec, process};

/// How a service's server came to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    EnvVar,
    StandardPort,
    /// A server of the right kind answers on our dedicated port but was started elsewhere, e.g. by
    /// `infra up` in another checkout on the same machine.
    DedicatedPort,
    EarlierUp {
        pid: u32,
    },
    Started {
        pid: u32,
    },
}

#[derive(Debug)]
pub(super) struct Running {
    pub(super) service: Service,
    pub(super) url: String,
    pub(super) origin: Origin,
}

#[derive(Debug)]
pub(super) enum Lookup {
    Answering(Running),
    /// An earlier `up` started a server that is alive but does not answer (yet).
    OwnNotAnswering {
        pid: u32,
    },
    /// Something that `up` did not start listens on the dedicated port.
    ForeignOnDedicatedPort,
    Nothing,
}

/// Where a server for `service` answers, in order of preference.
pub(super) fn lookup(service: Service, infra_dir: &Path) -> Lookup {
    let spec = service.spec();
    let own = own_pid(spec, &infra_dir.join(spec.name));
    if let Some(url) = std::env::var(spec.env_var)
        .ok()
        .filter(|url| !url.is_empty())
    {
        // Only the host and port are printed: the URL may hold a password and CI logs are public.
        match probe::parse_url(&url) {
            Some(endpoint) if probe::answers(spec.probe, &endpoint) => {
                // A developer who sourced target/infra/env points the variable at our own server.
                let origin = match own {
                    Some(pid) if endpoint.is_loopback() && endpoint.port == spec.dedicated_port => {
                        Origin::EarlierUp { pid }
                    }
                    _ => Origin::EnvVar,
                };
                return Lookup::Answering(Running {
                    service,
                    url,
                    origin,
                });
            }
            Some(endpoint) => eprintln!(
                "note: {} points at {}:{}, which does not answer; looking further",
                spec.env_var, endpoint.host, endpoint.port
            ),
            None => eprintln!(
                "note: cannot tell host and port from {}; looking further",
                spec.env_var
            ),
        }
    }
    if let Some(port) = spec.standard_port
        && probe::answers(spec.probe, &Endpoint::local(port))
    {
        return Lookup::Answering(Running {
            service,
            url: (spec.url)(port),
            origin: Origin::StandardPort,
        });
    }
    let dedicated_answers = probe::answers(spec.probe, &Endpoint::local(spec.dedicated_port));
    match (own, dedicated_answers) {
        (Some(pid), true) => Lookup::Answering(Running {
            service,
            url: (spec.url)(spec.dedicated_port),
            origin: Origin::EarlierUp { pid },
        }),
        (Some(pid), false) => Lookup::OwnNotAnswering { pid },
        (None, true) => Lookup::ForeignOnDedicatedPort,
        (None, false) => Lookup::Nothing,
    }
}

/// The PID of the server that an earlier `up` started for `spec` in `dir`, if it still runs.
pub(super) fn own_pid(spec: &Spec, dir: &Path) -> Option<u32> {
    process::read_pid(&dir.join(spec.pid_file))
        .filter(|&pid| process::process_runs(pid, spec.process_name))
}

/// Removes a PID file that no running server owns; whether there was one.
pub(super) fn remove_stale_pid_file(pid_file: &Path) -> Result<bool> {
    if !pid_file.exists() {
        return Ok(false);
    }
    fs::remove_file(pid_file)
        .with_context(|| format!("cannot remove stale {}", pid_file.display()))?;
    Ok(true)
}
