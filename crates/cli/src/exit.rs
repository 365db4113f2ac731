//! The exit codes every Groundwork tool uses.

/// How a command ended: the process exit code, the same in every Groundwork tool.
///
/// | code | meaning |
/// |---|---|
/// | 0 | done |
/// | 1 | the command ran and failed (a server refused, a check failed, a database is unreachable) |
/// | 2 | usage or configuration: a bad option, a missing URL, an unreadable value file |
/// | 3 | conflict: a write was refused because the data changed since it was read (read it again and retry) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// 0: the command did what was asked.
    Success,
    /// 1: the command ran and failed.
    Failed,
    /// 2: the command line or the configuration is wrong; nothing was attempted.
    Usage,
    /// 3: a write was refused to protect a concurrent change.
    Conflict,
}

impl Exit {
    /// The numeric exit code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Conflict => 3,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}
