//! `--json` and `--no-color`: how a tool prints.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::Args;
use clap::builder::ValueParser;
use serde::Serialize;

use crate::Failure;

/// How a tool prints: `--json` for machines, and whether colour and progress bars are welcome.
///
/// Data goes to stdout (one JSON document with `--json`), messages and progress to stderr. A
/// progress bar is drawn only when stderr is a terminal and `--json` is not given; elsewhere (cron,
/// Kubernetes, a pipe) tools print plain lines. Colour follows <https://no-color.org>: `NO_COLOR`
/// set to anything non-empty, or `--no-color`, turns it off, and it is never sent to a
/// non-terminal.
#[derive(Debug, Clone, Copy, Default, Args)]
// The tool's own description stays its help text: this struct's documentation is for Rust users.
#[command(about = None, long_about = None)]
pub struct OutputArgs {
    /// Print the result as one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// No colour in messages (also `NO_COLOR` set to anything non-empty)
    #[arg(long, global = true, env = "NO_COLOR", hide_env_values = true, value_parser = no_color_parser())]
    pub no_color: bool,
}

/// `NO_COLOR` counts when set to anything non-empty, whatever the value; `--no-color` gives
/// `true`.
fn no_color_parser() -> ValueParser {
    ValueParser::new(|value: &str| Ok::<bool, std::convert::Infallible>(!value.is_empty()))
}

impl OutputArgs {
    /// With `--json`, prints `value` as one line of JSON on stdout; otherwise calls `human`, which
    /// prints it for people.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&T),
    ) -> Result<(), Failure> {
        if self.json {
            print_json(value)
        } else {
            human(value);
            Ok(())
        }
    }

    /// Whether colour may be used on stderr.
    pub fn color(&self) -> bool {
        !self.no_color && std::io::stderr().is_terminal()
    }

    /// Whether to draw a progress bar on stderr: it is a terminal and `--json` is not given.
    pub fn progress_bar(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string(value).context("cannot write the result as JSON")?;
    writeln!(std::io::stdout().lock(), "{text}").context("cannot write to stdout")?;
    Ok(())
}
