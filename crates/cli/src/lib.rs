#![doc = include_str!("../README.md")]

mod connect;
mod exit;
mod failure;
mod output;
mod value;

use std::future::Future;
use std::process::ExitCode;

use clap::Parser;

pub use connect::{ConnectArgs, DEFAULT_CONNECT_TIMEOUT_SECS, SecretUrlParser};
pub use exit::Exit;
pub use failure::{Failure, chain, print_error};
pub use output::{OutputArgs, print_json};
pub use value::read_value;

/// Runs a tool: parses its command line, drives `run` on a single-threaded runtime, prints a
/// failure once on stderr and returns the exit code of [`Exit`].
///
/// `--help` and `--version` exit with 0, every other command-line error with 2
/// ([`Exit::Usage`]). Colour of the `error:` prefix follows [`OutputArgs`] when the tool has one.
pub fn main<C, F, Fut>(run: F) -> ExitCode
where
    C: Parser,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let (cli, color) = match parse::<C>() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return finish(
                Err(Failure::failed(
                    anyhow::Error::new(error).context("cannot start the async runtime"),
                )),
                color,
            );
        }
    };
    finish(runtime.block_on(run(cli)), color)
}

/// Parses the command line of `C`, for tools that run their own runtime. On `--help`,
/// `--version` or a command-line error it prints what clap says and returns the exit code (0 or
/// 2); otherwise the parsed command line and whether colour is allowed (no `--no-color` or
/// `NO_COLOR` given, where the tool has [`OutputArgs`]).
pub fn parse<C: Parser>() -> Result<(C, bool), ExitCode> {
    let parsed = C::command().try_get_matches().and_then(|matches| {
        let no_color = matches
            .try_get_one::<bool>("no_color")
            .ok()
            .flatten()
            .copied()
            .unwrap_or(false);
        C::from_arg_matches(&matches).map(|cli| (cli, !no_color))
    });
    parsed.map_err(|error| {
        // Nothing is left to report a failed write of clap's message to.
        let _ = error.print();
        if error.use_stderr() {
            Exit::Usage.into()
        } else {
            Exit::Success.into()
        }
    })
}

/// The exit code of a command's result, printing a failure once on stderr.
pub fn finish(result: Result<(), Failure>, color: bool) -> ExitCode {
    match result {
        Ok(()) => Exit::Success.into(),
        Err(failure) => {
            print_error(&failure, color);
            failure.exit().into()
        }
    }
}
