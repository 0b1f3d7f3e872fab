//! A JSON answer holding a secret (data keys in the clear, stored data keys, a lease, a new token): written
//! to one buffer that the answer's body owns and wipes when dropped (sent, or the client gone).
//!
//! Why not axum's `Json`: it serializes into a growing `BytesMut` that is freed unwiped, and every
//! growth frees an unwiped copy of what was written so far. Here the buffer grows only through
//! [`byok_core::secret::extend_wiped`], which wipes the old one. (`Cache-Control: no-store` comes
//! with every answer, from the request-id layer.) The strings inside the value are the caller's to
//! wipe: hold them in `Zeroizing`.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use zeroize::Zeroizing;

/// `value` as JSON in a wiped buffer, first sized `room` bytes (a good guess spares a copy).
pub struct SecretJson<T> {
    value: T,
    room: usize,
}

impl<T: Serialize> SecretJson<T> {
    /// The answer for `value`; `room` is its expected size in bytes.
    pub fn new(value: T, room: usize) -> Self {
        Self { value, room }
    }
}

/// The answer's body: one buffer, wiped when the body is dropped.
pub fn wiped_body(buf: Zeroizing<Vec<u8>>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        axum::body::Body::from(bytes::Bytes::from_owner(buf)),
    )
        .into_response()
}

impl<T: Serialize> IntoResponse for SecretJson<T> {
    fn into_response(self) -> Response {
        let mut out = Wiped(Zeroizing::new(Vec::with_capacity(self.room)));
        match serde_json::to_writer(&mut out, &self.value) {
            Ok(()) => wiped_body(out.0),
            // Only a `Serialize` impl that fails could get here; none of the answers' do.
            Err(e) => super::error::ApiError::new(
                byok_core::ApiCode::Internal,
                format!("answer not written: {e}"),
            )
            .into_response(),
        }
    }
}

/// A writer whose growth wipes the buffer it leaves.
struct Wiped(Zeroizing<Vec<u8>>);

impl std::io::Write for Wiped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        byok_core::secret::extend_wiped(&mut self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::SecretJson;

    /// The body is the value's JSON, byte for byte as serde_json writes it, also when it outgrows
    /// the first guess (the growth goes through the wiping path).
    #[tokio::test]
    async fn the_body_is_the_values_json_whatever_the_first_size() {
        let value = serde_json::json!({
            "keys": (0..40).map(|i| serde_json::json!({"id": i, "key": "k".repeat(44)})).collect::<Vec<_>>(),
        });
        for room in [0, 16, 4096] {
            let resp = SecretJson::new(&value, room).into_response();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(
                &body[..],
                serde_json::to_vec(&value).unwrap(),
                "room {room}"
            );
        }
    }
}
