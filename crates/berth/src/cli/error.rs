//! What can go wrong in a management command, and the exit code each kind of failure
//! gives (see [`super::EXIT_CODES`]).

use std::fmt;

/// The three kinds of failure a script can tell apart by exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exit 1: the registry refused the request, or something failed on the way.
    Failed,
    /// Exit 2: the command line itself is wrong (clap uses 2 for its own errors too).
    Usage,
    /// Exit 3: not logged in, wrong credentials, not the admin, registry unreachable.
    Access,
}

/// A failed command: what went wrong and, where we know it, how to fix it.
#[derive(Debug)]
pub struct CliError {
    kind: Kind,
    message: String,
    hint: Option<String>,
}

impl CliError {
    /// A refusal or failure (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Kind::Failed, message)
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    /// A login or connection problem (exit 3).
    pub fn access(message: impl Into<String>) -> Self {
        Self::new(Kind::Access, message)
    }

    fn new(kind: Kind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a line saying how to fix the problem.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::Access => 3,
        }
    }

    /// Prints the error, and its hint, on standard error.
    pub fn report(&self) {
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}
