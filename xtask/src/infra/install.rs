//! Installing the servers `infra up` is about to start: Debian packages with apt-get (as root),
//! moto with pip in a virtual environment of its own.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use super::{Service, UpOptions, process, s3};

pub(super) fn missing(to_start: &[Service], infra_dir: &Path, options: UpOptions) -> Result<()> {
    let packages: BTreeSet<_> = to_start
        .iter()
        .flat_map(|service| service.missing_packages())
        .collect();
    let s3_dir = infra_dir.join(s3::SPEC.name);
    let needs_moto = to_start.contains(&Service::S3) && !s3::moto_installed(&s3_dir);
    let log = infra_dir.join("install.log");

    if !packages.is_empty() {
        let list = packages.iter().copied().collect::<Vec<_>>().join(" ");
        if !options.install {
            bail!(
                "not installed: {list}; install with `apt-get install --no-install-recommends {list}` \
                 or run `cargo xtask infra up` without --no-install"
            );
        }
        if !process::is_root() {
            bail!(
                "not installed: {list}; install with `sudo apt-get install --no-install-recommends {list}` \
                 (xtask installs packages only when run as root)"
            );
        }
        println!("installing {list}; output goes to {}", log.display());
        let apt_get = || {
            let mut command = Command::new("apt-get");
            command.env("DEBIAN_FRONTEND", "noninteractive");
            command
        };
        process::run_printed(apt_get().arg("update"), &log)?;
        process::run_printed(
            apt_get()
                .args(["install", "-y", "--no-install-recommends"])
                .args(&packages),
            &log,
        )?;
        let still_missing: BTreeSet<_> = to_start
            .iter()
            .flat_map(|service| service.missing_packages())
            .collect();
        if !still_missing.is_empty() {
            bail!(
                "installed {list}, but the servers of {} are still not where xtask looks; see {}",
                still_missing.into_iter().collect::<Vec<_>>().join(" "),
                log.display()
            );
        }
    }

    if needs_moto {
        if !options.install {
            bail!(
                "moto is not installed in {venv}; run `python3 -m venv {venv} && {venv}/bin/pip install \
                 'moto[server]'` or run `cargo xtask infra up` without --no-install",
                venv = s3::venv_dir(&s3_dir).display()
            );
        }
        println!("installing moto; output goes to {}", log.display());
        s3::install_moto(&s3_dir, &log)?;
    }
    Ok(())
}
