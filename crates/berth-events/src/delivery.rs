//! One call to a receiver and what its outcome means: delivered, worth another attempt, or
//! refused for good; and the wait between attempts.

use std::time::Duration;

use berth_auth::webhook::Webhook;

use crate::signature;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// The longest one call may take, connection included.
    pub timeout: Duration,
    /// Calls made for one event before it is recorded as failed.
    pub max_attempts: u32,
    /// The wait after the first failed call; each further one doubles it (at most
    /// [`MAX_RETRY_DELAY`]).
    pub retry_delay: Duration,
    /// This registry's address, as payloads name it (`request.host`, `source.host`).
    pub host: String,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            retry_delay: Duration::from_secs(2),
            host: "localhost".into(),
        }
    }
}

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// The wait before attempt `attempt + 1`, after `attempt` (from 1) failed: `base`, doubled
/// for each attempt after the first, at most [`MAX_RETRY_DELAY`].
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// Worth another attempt: no answer (connection, timeout), 5xx, 408, 429.
    Retry {
        /// The status, if the receiver answered.
        code: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// Refused for good: any other status (a 4xx: the receiver will not take it), or a
    /// definition that cannot be sent (a header that is no header).
    Refused {
        /// The status, if the receiver answered.
        code: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// The outcome a status code means.
pub fn classify(code: u16) -> Outcome {
    match code {
        200..=299 => Outcome::Delivered(code),
        408 | 429 | 500..=599 => Outcome::Retry {
            code: Some(code),
            error: format!("the receiver answered {code}"),
        },
        _ => Outcome::Refused {
            code: Some(code),
            error: format!("the receiver answered {code}"),
        },
    }
}

/// Posts `body` to `webhook` once: `Content-Type: application/json` (unless a custom header
/// sets it), the custom headers, and the signature.
pub async fn send(
    client: &reqwest::Client,
    webhook: &Webhook,
    body: Vec<u8>,
    timeout: Duration,
) -> Outcome {
    let mut request = client
        .post(&webhook.uri)
        .timeout(timeout)
        .header(signature::HEADER, signature::sign(&webhook.secret, &body));
    if !webhook
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("Content-Type", "application/json");
    }
    for (name, value) in &webhook.headers {
        request = request.header(name, value);
    }
    let request = match request.body(body).build() {
        Ok(request) => request,
        Err(e) => {
            return Outcome::Refused {
                code: None,
                error: format!("the call cannot be made: {e}"),
            };
        }
    };
    match client.execute(request).await {
        Ok(response) => classify(response.status().as_u16()),
        Err(e) => Outcome::Retry {
            code: None,
            error: if e.is_timeout() {
                format!("no answer within {} s", timeout.as_secs_f32())
            } else {
                // reqwest's top-level message hides the cause (refused, DNS, TLS).
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message = format!("{message}: {cause}");
                    source = cause.source();
                }
                message
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let base = Duration::from_secs(2);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(4));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(16));
        assert_eq!(retry_delay(base, 20), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, 200), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(204), Outcome::Delivered(204));
        for retried in [408, 429, 500, 502, 503] {
            assert!(
                matches!(classify(retried), Outcome::Retry { .. }),
                "{retried}"
            );
        }
        for refused in [301, 400, 401, 403, 404, 410] {
            assert!(
                matches!(classify(refused), Outcome::Refused { .. }),
                "{refused}"
            );
        }
    }
}
