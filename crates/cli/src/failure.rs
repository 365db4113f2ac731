//! A failed command and the one place its error is printed.

use std::error::Error as StdError;
use std::fmt;
use std::io::{IsTerminal as _, Write as _};

use crate::Exit;

/// A failed command: the error with its causes, and the exit code it ends the process with.
///
/// Any error converts into a `Failure` that exits with [`Exit::Failed`], so `?` works in a tool's
/// `run` function; [`Failure::usage`] and [`Failure::conflict`] choose the other codes.
pub struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

impl Failure {
    /// A failure ending with `exit`.
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit,
            error: error.into(),
        }
    }

    /// The command ran and failed (exit code 1).
    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Exit::Failed, error)
    }

    /// The command line or configuration is wrong (exit code 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Exit::Usage, error)
    }

    /// A write was refused to protect a concurrent change (exit code 3).
    pub fn conflict(error: impl Into<anyhow::Error>) -> Self {
        Self::new(Exit::Conflict, error)
    }

    /// The exit code this failure ends the process with.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The error, e.g. to downcast it.
    pub fn error(&self) -> &anyhow::Error {
        &self.error
    }

    /// The error and its causes on one line, each cause once: see [`chain`].
    pub fn message(&self) -> String {
        chain(self.error.as_ref())
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self::failed(error)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("exit", &self.exit)
            .field("error", &self.message())
            .finish()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// An error and its causes joined by `: `, each cause printed once.
///
/// A cause whose text the line already holds is left out: some errors outside Groundwork (sqlx's
/// `error communicating with database: {0}`, for one) repeat their source in their own message
/// and also return it from [`std::error::Error::source`].
///
/// ```
/// use groundwork_cli::chain;
///
/// let io = std::io::Error::other("connection refused");
/// let error = anyhow::Error::new(io).context("cannot connect to the database at db:5432");
/// assert_eq!(chain(error.as_ref()), "cannot connect to the database at db:5432: connection refused");
/// ```
pub fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// Prints `error: <chain>` on stderr, the prefix in red when `color` allows and stderr is a
/// terminal.
pub fn print_error(failure: &Failure, color: bool) {
    let prefix = if color && std::io::stderr().is_terminal() {
        "\x1b[1;31merror:\x1b[0m"
    } else {
        "error:"
    };
    // Nothing is left to report a failed write to stderr on.
    let _ = writeln!(std::io::stderr().lock(), "{prefix} {}", failure.message());
}
