//! The API's caller assertion. Restate's ingress has no authentication of its own,
//! so the order object does not trust it: the API signs every call it makes with
//! `ORDER_INTERNAL_KEY` (an HMAC over the handler, the order, the request's id, the
//! digest of its body and, for reads, an expiry), and each handler refuses a call
//! whose assertion does not verify before it reads or changes anything.
//!
//! A command's assertion does not expire: a command may wait long in its order's
//! queue behind a saga, and its request id makes a replay of it join the first
//! outcome instead of running again. A read's assertion expires after a minute.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The header carrying the assertion: `v1.<expires, 0 for none>.<hex HMAC>`.
pub const ASSERTION_HEADER: &str = "x-order-caller";
/// The header naming the request (the command's dedup key in the object).
pub const REQUEST_HEADER: &str = "x-order-request";
/// How long a read's assertion holds.
pub const READ_TTL_SECS: i64 = 60;
/// The shortest `ORDER_INTERNAL_KEY` accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The secret shared by the API and the order object.
#[derive(Clone)]
pub struct CallerKey(Arc<[u8]>);

impl std::fmt::Debug for CallerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerKey(hidden)")
    }
}

/// One call, as the assertion covers it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub handler: &'a str,
    /// The order id (the object's key).
    pub key: &'a str,
    /// The request's id: its idempotency key at the ingress.
    pub request: &'a str,
    /// SHA-256 of the body as sent.
    pub digest: &'a [u8; 32],
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("the call carries no caller assertion: only the order API may call the order object")]
    Missing,
    #[error("the caller assertion does not verify")]
    Invalid,
    #[error("the caller assertion has expired")]
    Expired,
}

/// SHA-256 of a request body.
pub fn digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

impl CallerKey {
    /// The key of `secret`'s bytes; at least [`MIN_KEY_LEN`] of them.
    pub fn new(secret: &[u8]) -> Result<CallerKey, String> {
        if secret.len() < MIN_KEY_LEN {
            return Err(format!("must be at least {MIN_KEY_LEN} bytes long"));
        }
        Ok(CallerKey(secret.into()))
    }

    /// A new random key, as 64 hex characters (its text form is the secret).
    pub fn generate() -> anyhow::Result<(CallerKey, String)> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
        let text = hex(&bytes);
        Ok((CallerKey(text.as_bytes().into()), text))
    }

    /// The assertion header's value for `call`, expiring at `expires` (Unix
    /// seconds) when given.
    pub fn sign(&self, call: Call<'_>, expires: Option<i64>) -> String {
        let expires = expires.unwrap_or(0);
        format!("v1.{expires}.{}", hex(&self.mac(call, expires)))
    }

    /// Checks `assertion` (the header's value, if any) for `call` at `now` (Unix
    /// seconds); `read` calls must carry an expiry that has not passed.
    pub fn verify(
        &self,
        assertion: Option<&str>,
        call: Call<'_>,
        read: bool,
        now: i64,
    ) -> Result<(), Refusal> {
        let assertion = assertion.ok_or(Refusal::Missing)?;
        let mut parts = assertion.splitn(3, '.');
        let (Some("v1"), Some(expires), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Invalid);
        };
        let expires: i64 = expires.parse().map_err(|_| Refusal::Invalid)?;
        let mac = unhex(mac).ok_or(Refusal::Invalid)?;
        let mut expected = self.hmac();
        expected.update(&message(call, expires));
        // Constant-time comparison.
        expected.verify_slice(&mac).map_err(|_| Refusal::Invalid)?;
        if read && (expires == 0 || expires < now) {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    fn hmac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    fn mac(&self, call: Call<'_>, expires: i64) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(&message(call, expires));
        mac.finalize().into_bytes().into()
    }
}

/// What the HMAC covers; no part can hold a newline (header values and ids).
fn message(call: Call<'_>, expires: i64) -> Vec<u8> {
    format!(
        "v1\n{}\n{}\n{}\n{expires}\n{}",
        call.handler,
        call.key,
        call.request,
        hex(call.digest)
    )
    .into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CallerKey {
        CallerKey::new(&[7u8; 32]).unwrap()
    }

    fn call<'a>(handler: &'a str, body: &'a [u8; 32]) -> Call<'a> {
        Call {
            handler,
            key: "0b5f6a3e-2c1d-4a8e-9f00-5a1b2c3d4e5f",
            request: "refund_items:0b5f:k1",
            digest: body,
        }
    }

    #[test]
    fn a_signed_command_verifies_and_any_change_is_refused() {
        let body = digest(br#"{"items":[{"item_id":1,"quantity":1}]}"#);
        let signed = key().sign(call("refund_items", &body), None);
        assert_eq!(
            key().verify(Some(&signed), call("refund_items", &body), false, 0),
            Ok(())
        );
        let other_body = digest(br#"{"items":[{"item_id":1,"quantity":2}]}"#);
        let refused = |c, s: &str| key().verify(Some(s), c, false, 0);
        assert_eq!(
            refused(call("refund_items", &other_body), &signed),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            refused(call("cancel_items", &body), &signed),
            Err(Refusal::Invalid)
        );
        let mut other_order = call("refund_items", &body);
        other_order.key = "1b5f6a3e-2c1d-4a8e-9f00-5a1b2c3d4e5f";
        assert_eq!(refused(other_order, &signed), Err(Refusal::Invalid));
        let mut other_request = call("refund_items", &body);
        other_request.request = "refund_items:0b5f:k2";
        assert_eq!(refused(other_request, &signed), Err(Refusal::Invalid));
        let other_key = CallerKey::new(&[8u8; 32]).unwrap();
        let forged = other_key.sign(call("refund_items", &body), None);
        assert_eq!(
            refused(call("refund_items", &body), &forged),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            key().verify(None, call("refund_items", &body), false, 0),
            Err(Refusal::Missing)
        );
        for junk in [
            "", "v1", "v1.0", "v2.0.00", "v1.x.00", "v1.0.zz", "v1.0.abc",
        ] {
            assert_eq!(
                refused(call("refund_items", &body), junk),
                Err(Refusal::Invalid)
            );
        }
    }

    #[test]
    fn a_read_needs_an_expiry_that_has_not_passed() {
        let body = digest(b"");
        let c = call("get", &body);
        let fresh = key().sign(c, Some(1_000));
        assert_eq!(key().verify(Some(&fresh), c, true, 999), Ok(()));
        assert_eq!(
            key().verify(Some(&fresh), c, true, 1_001),
            Err(Refusal::Expired)
        );
        let never = key().sign(c, None);
        assert_eq!(
            key().verify(Some(&never), c, true, 0),
            Err(Refusal::Expired)
        );
        // The expiry is covered by the HMAC.
        let stretched = fresh.replacen("1000", "9000", 1);
        assert_eq!(
            key().verify(Some(&stretched), c, true, 999),
            Err(Refusal::Invalid)
        );
    }

    #[test]
    fn short_keys_are_refused_and_generated_ones_are_long_enough() {
        assert!(CallerKey::new(b"short").is_err());
        let (_, text) = CallerKey::generate().unwrap();
        assert_eq!(text.len(), 64);
        assert!(CallerKey::new(text.as_bytes()).is_ok());
    }
}
