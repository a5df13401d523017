//! What every public handler of the order object checks before it reads or changes
//! anything: the API's caller assertion ([`crate::caller`]), then its own input,
//! whatever the API already checked (Restate's ingress is reachable without it).

use crate::caller::{self, Call, CallerKey, Refusal};
use crate::domain::{MAX_ITEMS, MAX_QUANTITY};
use restate_sdk::context::HeaderMap;
use restate_sdk::prelude::*;
use restate_sdk::serde::PayloadMetadata;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// The code of the terminal error of a call whose input (or key) cannot be a
/// command: the API reads it from the failed call (a create's invalid order).
pub const BAD_INPUT: u16 = 400;

/// Why the object turns a call away before it reads or changes anything. The call
/// fails for good, with the code the caller reads from the terminal error.
#[derive(Debug)]
pub enum Unadmitted {
    /// The API's caller assertion does not verify (why, for the log and the error).
    Unauthenticated(Refusal),
    /// The input or the object's key breaks the object's own rules ([`BAD_INPUT`]).
    BadInput(String),
}

impl From<Unadmitted> for TerminalError {
    fn from(unadmitted: Unadmitted) -> Self {
        match unadmitted {
            Unadmitted::Unauthenticated(refusal) => {
                TerminalError::new_with_code(401, refusal.to_string())
            }
            Unadmitted::BadInput(message) => TerminalError::new_with_code(BAD_INPUT, message),
        }
    }
}

/// The order's id: the object's `key`, which must be a UUID.
pub fn order_id(key: &str) -> Result<Uuid, TerminalError> {
    key.parse()
        .map_err(|_| Unadmitted::BadInput("the order key must be a UUID".into()).into())
}

/// A handler's JSON input, with the digest of its bytes as they arrived.
pub struct Signed<T> {
    input: Result<T, String>,
    digest: [u8; 32],
}

impl<T: DeserializeOwned> restate_sdk::serde::Deserialize for Signed<T> {
    type Error = std::convert::Infallible;

    // Never fails here: an unreadable input is refused after the assertion, so that
    // a caller without one learns nothing from the answer.
    fn deserialize(bytes: &mut hyper::body::Bytes) -> Result<Self, Self::Error> {
        Ok(Signed {
            input: serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            digest: caller::digest(bytes),
        })
    }
}

impl<T: serde::Serialize> restate_sdk::serde::Serialize for Signed<T> {
    type Error = serde_json::Error;

    fn serialize(&self) -> Result<hyper::body::Bytes, Self::Error> {
        match &self.input {
            Ok(value) => serde_json::to_vec(value).map(Into::into),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<T> PayloadMetadata for Signed<T> {}

/// Admits a command: its assertion must verify for `handler` on this object with
/// this input. Returns the input and the request's id (the key under which its
/// outcome is kept); a terminal `401` otherwise, or `400` for an unreadable input.
pub fn admit_command<T>(
    key: &CallerKey,
    headers: &HeaderMap,
    object_key: &str,
    handler: &str,
    signed: Signed<T>,
) -> Result<(T, String), TerminalError> {
    let request = verify(key, headers, object_key, handler, &signed.digest, false)?;
    let input = signed
        .input
        .map_err(|e| Unadmitted::BadInput(format!("unreadable input: {e}")))?;
    Ok((input, request))
}

/// Admits a read (no input): its assertion must verify and must not have expired.
pub fn admit_read(
    key: &CallerKey,
    headers: &HeaderMap,
    object_key: &str,
    handler: &str,
) -> Result<(), TerminalError> {
    verify(
        key,
        headers,
        object_key,
        handler,
        &caller::digest(b""),
        true,
    )
    .map(|_| ())
}

fn verify(
    key: &CallerKey,
    headers: &HeaderMap,
    object_key: &str,
    handler: &str,
    digest: &[u8; 32],
    read: bool,
) -> Result<String, TerminalError> {
    let request = headers.get(caller::REQUEST_HEADER).cloned();
    let call = Call {
        handler,
        key: object_key,
        request: request.as_deref().unwrap_or_default(),
        digest,
    };
    let assertion = headers.get(caller::ASSERTION_HEADER).map(String::as_str);
    let now = chrono::Utc::now().timestamp();
    match (key.verify(assertion, call, read, now), request) {
        (Ok(()), Some(request)) if !request.is_empty() => Ok(request),
        (Ok(()), _) => Err(refused(Refusal::Invalid)),
        (Err(refusal), _) => Err(refused(refusal)),
    }
}

fn refused(refusal: Refusal) -> TerminalError {
    tracing::warn!(%refusal, "a call to the order object was refused");
    Unadmitted::Unauthenticated(refusal).into()
}

/// Checks a list of units named by a command: 1 to [`MAX_ITEMS`] lines, each of 1
/// to [`MAX_QUANTITY`] units. An empty list must never reach a downstream service,
/// which reads it as "everything".
pub fn check_units(quantities: impl ExactSizeIterator<Item = i64>) -> Result<(), TerminalError> {
    let lines = quantities.len();
    if lines == 0 || lines > MAX_ITEMS {
        let message = format!("items must hold 1 to {MAX_ITEMS} lines, not {lines}");
        return Err(Unadmitted::BadInput(message).into());
    }
    for quantity in quantities {
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            let message = format!("each quantity must be 1 to {MAX_QUANTITY}, not {quantity}");
            return Err(Unadmitted::BadInput(message).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_must_be_a_non_empty_bounded_list_of_positive_quantities() {
        assert!(check_units([1i64, MAX_QUANTITY].into_iter()).is_ok());
        for bad in [
            vec![],
            vec![0],
            vec![-1],
            vec![MAX_QUANTITY + 1],
            vec![1; 201],
        ] {
            let e = check_units(bad.clone().into_iter()).unwrap_err();
            assert_eq!(e.code(), 400, "{bad:?}");
        }
    }

    #[test]
    fn a_call_without_a_valid_assertion_is_refused_with_401() {
        let key = CallerKey::new(&[1u8; 32]).unwrap();
        let id = "5d2a8f1e-0000-4000-8000-000000000001";
        let body = br#"{"items":[]}"#;
        let signed = || Signed::<serde_json::Value> {
            input: serde_json::from_slice(body).map_err(|e| e.to_string()),
            digest: caller::digest(body),
        };
        let mut headers = HeaderMap::default();
        let e = admit_command(&key, &headers, id, "cancel_items", signed()).unwrap_err();
        assert_eq!(e.code(), 401);

        let call = Call {
            handler: "cancel_items",
            key: id,
            request: "r1",
            digest: &caller::digest(body),
        };
        headers.insert(caller::REQUEST_HEADER, "r1".to_owned());
        headers.insert(caller::ASSERTION_HEADER, key.sign(call, None));
        let (_, request) = admit_command(&key, &headers, id, "cancel_items", signed()).unwrap();
        assert_eq!(request, "r1");
        // The same assertion does not admit another handler, order or request.
        assert_eq!(
            admit_command(&key, &headers, id, "refund_items", signed())
                .unwrap_err()
                .code(),
            401
        );
        let other = "5d2a8f1e-0000-4000-8000-000000000002";
        assert!(admit_command(&key, &headers, other, "cancel_items", signed()).is_err());
        headers.insert(caller::REQUEST_HEADER, "r2".to_owned());
        assert!(admit_command(&key, &headers, id, "cancel_items", signed()).is_err());
        // A command's assertion is not a read's.
        assert!(admit_read(&key, &headers, id, "cancel_items").is_err());
    }
}
