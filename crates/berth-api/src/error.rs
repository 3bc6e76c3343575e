//! The error body of every Berth API, management and distribution alike:
//! `{"errors":[{"code","message","detail"}]}`, as the OCI distribution specification
//! defines it.

use serde::{Deserialize, Serialize};

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors; Berth always sends one.
    pub errors: Vec<ErrorItem>,
}

/// One error of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorItem {
    /// Machine-readable: the spec's codes (`NAME_UNKNOWN`, `DENIED`, …) or the management
    /// API's (`NOT_FOUND`, `CONFLICT`, `INVALID`, `MANAGED_BY_PARENT`, …).
    pub code: String,
    /// For people.
    pub message: String,
    /// Structured context (a digest, a size and its limit); left out when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl ErrorBody {
    /// A body holding the one error `code` with `message` and, when given, `detail`.
    pub fn one(code: &str, message: String, detail: Option<serde_json::Value>) -> Self {
        ErrorBody {
            errors: vec![ErrorItem {
                code: code.to_owned(),
                message,
                detail,
            }],
        }
    }

    /// The first error, the one that names the refusal.
    pub fn first(&self) -> Option<&ErrorItem> {
        self.errors.first()
    }
}
