//! The console API's answers: JSON, and the JSON of a refusal. Used by [`super::api`] and
//! [`super::search`] alike.

use serde_json::{Value, json};

use super::auth::Refusal;
use crate::server::session::http::answer::Answer;

/// A JSON answer (`Cache-Control: no-store`: nothing here belongs in a cache).
pub fn json(status: u16, reason: &'static str, value: &Value) -> Answer {
    Answer {
        status,
        reason,
        headers: vec![
            ("Content-Type", "application/json".into()),
            ("Cache-Control", "no-store".into()),
        ],
        body: value.to_string().into_bytes(),
        next: None,
        head: None,
        waiting: None,
    }
}

/// `{"error": message}` with the refusal's status (and `Retry-After` for `429`).
pub fn refusal(refused: &Refusal) -> Answer {
    let mut answer = json(
        refused.status,
        refused.reason,
        &json!({ "error": refused.message }),
    );
    if let Some(seconds) = refused.retry_after {
        answer.headers.push(("Retry-After", seconds.to_string()));
    }
    answer
}
