//! Who calls, and what they may do: bearer JWTs verified against one key (HS256
//! secret, or an RS256/ES256 public key), the roles they carry, and the rules of
//! access. Free of HTTP, so that every API of the service applies the same rules.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// The shortest HS256 secret accepted: a key as long as the hash (RFC 7518, 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// A role a token may carry; roles the service does not know are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sees and acts on its own orders only.
    Customer,
    /// Everything but the operator API.
    Staff,
    /// Everything `Staff` may, and the operator API.
    Operator,
    /// Another service: what `Staff` may.
    Service,
}

impl Role {
    fn named(name: &str) -> Option<Role> {
        match name {
            "customer" => Some(Role::Customer),
            "staff" => Some(Role::Staff),
            "operator" => Some(Role::Operator),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

/// The verified identity a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The caller's id (`sub`); a customer's must be a UUID to own orders.
    pub sub: String,
    /// The known roles of the token; `Customer` alone when it names none.
    pub roles: HashSet<Role>,
}

impl Claims {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The claims as a token carries them.
#[derive(Deserialize)]
struct TokenClaims {
    sub: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
    /// Present (`null` included) or absent, so that only a string passes.
    #[serde(default, deserialize_with = "present")]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<serde_json::Value>,
}

/// A claim that is there, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl TokenClaims {
    /// The rules of the service on top of the JWT's: `iss` a string, `sub` in its
    /// canonical lower-case form when it is a UUID (so that one customer has one
    /// spelling), and no lifetime (`exp - iat`) longer than `max_age`.
    fn check(&self, max_age: Option<Duration>) -> Result<(), Unauthenticated> {
        if matches!(&self.iss, Some(iss) if !iss.is_string()) {
            return Err(Unauthenticated::Malformed("iss must be a string".into()));
        }
        if let Ok(id) = self.sub.parse::<Uuid>() {
            if id.to_string() != self.sub {
                return Err(Unauthenticated::NonCanonicalSubject);
            }
        }
        let Some(max_age) = max_age else {
            return Ok(());
        };
        let iat = self
            .iat
            .as_ref()
            .ok_or(Unauthenticated::MissingClaim("iat".into()))?;
        let (Some(iat), Some(exp)) = (iat.as_f64(), self.exp.as_ref().and_then(|e| e.as_f64()))
        else {
            return Err(Unauthenticated::Malformed(
                "iat and exp must be numbers".into(),
            ));
        };
        // A token issued in the future could carry any lifetime past now.
        if iat > now_secs() + LEEWAY_SECS as f64 {
            return Err(Unauthenticated::NotYetValid);
        }
        match exp - iat <= max_age.as_secs_f64() {
            true => Ok(()),
            false => Err(Unauthenticated::TooLong(max_age.as_secs())),
        }
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl From<TokenClaims> for Claims {
    fn from(token: TokenClaims) -> Claims {
        let mut roles: HashSet<Role> = token
            .roles
            .unwrap_or_default()
            .iter()
            .filter_map(|name| Role::named(name))
            .collect();
        if roles.is_empty() {
            roles.insert(Role::Customer);
        }
        Claims {
            sub: token.sub,
            roles,
        }
    }
}

/// The caller of a request, as far as access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authorization is off: every call is allowed.
    Anyone,
    /// A verified token.
    Token(Claims),
}

/// Which orders a caller reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    All,
    /// Those of this customer; `None` for a customer whose `sub` is not a UUID,
    /// who owns nothing.
    Customer(Option<Uuid>),
}

impl Caller {
    /// Every order, or only those of the customer the caller is.
    pub fn reach(&self) -> Reach {
        match self {
            Caller::Token(claims) if !self.may_manage() => Reach::Customer(claims.sub.parse().ok()),
            _ => Reach::All,
        }
    }

    /// Whether the caller may see, create and act on an order of `customer_id`
    /// (`None`: a guest order, which no customer owns).
    pub fn may_access(&self, customer_id: Option<Uuid>) -> bool {
        match self.reach() {
            Reach::All => true,
            Reach::Customer(me) => me.is_some() && me == customer_id,
        }
    }

    /// Whether the caller may do what only the shop does: move statuses, receive
    /// or reject returns, refund without a return.
    pub fn may_manage(&self) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Token(claims) => [Role::Staff, Role::Service, Role::Operator]
                .into_iter()
                .any(|role| claims.has(role)),
        }
    }

    /// The caller's role as a change records it (`staff` with authorization off),
    /// and its `sub`.
    pub fn actor(&self) -> (&'static str, Option<String>) {
        match self {
            Caller::Anyone => ("staff", None),
            Caller::Token(claims) => {
                let role = [
                    (Role::Operator, "operator"),
                    (Role::Staff, "staff"),
                    (Role::Service, "service"),
                ]
                .into_iter()
                .find(|(role, _)| claims.has(*role))
                .map_or("customer", |(_, name)| name);
                (role, Some(claims.sub.clone()))
            }
        }
    }

    /// The side of an order the caller speaks for in a change request: `customer`
    /// for a customer, `merchant` for staff, services and operators; none with
    /// authorization off, where every caller is either side.
    pub fn side(&self) -> Option<&'static str> {
        match self {
            Caller::Anyone => None,
            Caller::Token(_) if self.may_manage() => Some("merchant"),
            Caller::Token(_) => Some("customer"),
        }
    }

    /// Whether the caller may use the operator API.
    pub fn may_operate(&self) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Token(claims) => claims.has(Role::Operator),
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("this call needs a token: send Authorization: Bearer <JWT>")]
    Missing,
    #[error("the Authorization header must be one `Bearer <JWT>`")]
    MalformedHeader,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token must be signed with {0:?}")]
    WrongAlgorithm(Algorithm),
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's sub must be a UUID in its canonical lower-case form")]
    NonCanonicalSubject,
    #[error("the token lives longer (exp - iat) than the {0} s allowed")]
    TooLong(u64),
    #[error("the token is not a valid JWT: {0}")]
    Malformed(String),
}

/// The token of an `Authorization` value (`Bearer <JWT>`, the scheme in any case).
pub fn bearer_token(value: &str) -> Result<&str, Unauthenticated> {
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(Unauthenticated::MalformedHeader)?;
    let token = token.trim();
    match scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ') {
        true => Ok(token),
        false => Err(Unauthenticated::MalformedHeader),
    }
}

/// What a token's issuer and audience must be, and how long it may live, when set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The longest lifetime (`exp - iat`) accepted; tokens then need `iat`.
    pub max_age: Option<Duration>,
}

/// Verifies bearer tokens against one key and algorithm.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
    expected: Expected,
}

impl std::fmt::Debug for Verifier {
    /// The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

/// A key that cannot verify tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The DER encoding of the P-256 curve's OID (1.2.840.10045.3.1.7).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

impl Verifier {
    /// HS256 with `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn hs256(secret: &[u8], expected: Expected) -> Result<Verifier, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError(format!(
                "an HS256 secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        let key = DecodingKey::from_secret(secret);
        Ok(Verifier::new(key, Algorithm::HS256, expected))
    }

    /// RS256 or ES256, as the PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`)
    /// says: an RSA key or an EC key on P-256.
    pub fn public_key_pem(pem: &[u8], expected: Expected) -> Result<Verifier, KeyError> {
        let parsed = pem::parse(pem).map_err(|e| KeyError(format!("not a PEM file: {e}")))?;
        if !matches!(parsed.tag(), "PUBLIC KEY" | "RSA PUBLIC KEY") {
            return Err(KeyError(format!(
                "holds a {}, not a public key (PEM `PUBLIC KEY`)",
                parsed.tag()
            )));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Verifier::new(key, Algorithm::RS256, expected));
        }
        let key = DecodingKey::from_ec_pem(pem).map_err(|_| {
            KeyError("must be an RSA (RS256) or EC P-256 (ES256) public key".into())
        })?;
        if !parsed
            .contents()
            .windows(P256_OID.len())
            .any(|w| w == P256_OID)
        {
            return Err(KeyError(
                "an EC key must be on the P-256 curve (ES256)".into(),
            ));
        }
        Ok(Verifier::new(key, Algorithm::ES256, expected))
    }

    fn new(key: DecodingKey, algorithm: Algorithm, expected: Expected) -> Verifier {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &expected.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &expected.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Unchecked, a token's audience is of no concern.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Verifier {
            key,
            validation,
            algorithm,
            expected,
        }
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The claims of `token` once its signature, times, issuer and audience hold.
    pub fn verify(&self, token: &str) -> Result<Claims, Unauthenticated> {
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Unauthenticated::Expired,
                ErrorKind::ImmatureSignature => Unauthenticated::NotYetValid,
                ErrorKind::InvalidSignature => Unauthenticated::BadSignature,
                ErrorKind::InvalidAlgorithm => Unauthenticated::WrongAlgorithm(self.algorithm),
                ErrorKind::InvalidIssuer => Unauthenticated::WrongIssuer,
                ErrorKind::InvalidAudience => Unauthenticated::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => {
                    Unauthenticated::MissingClaim(claim.clone())
                }
                _ => Unauthenticated::Malformed(e.to_string()),
            })?;
        data.claims.check(self.expected.max_age)?;
        Ok(data.claims.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    const SECRET: &str = "a test secret of at least 32 bytes!";
    const RS_PRIVATE: &str = include_str!("../tests/api/fixtures/rs256-private.pem");
    const RS_PUBLIC: &str = include_str!("../tests/api/fixtures/rs256-public.pem");
    const ES_PRIVATE: &str = include_str!("../tests/api/fixtures/es256-private.pem");
    const ES_PUBLIC: &str = include_str!("../tests/api/fixtures/es256-public.pem");
    const P384_PUBLIC: &str = include_str!("../tests/api/fixtures/p384-public.pem");

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({ "sub": Uuid::nil(), "exp": now() + 600 });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    fn hs256(claims: &Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    fn verifier(expected: Expected) -> Verifier {
        Verifier::hs256(SECRET.as_bytes(), expected).unwrap()
    }

    fn roles(token_roles: Value) -> HashSet<Role> {
        let token = hs256(&claims(json!({ "roles": token_roles })));
        verifier(Expected::default()).verify(&token).unwrap().roles
    }

    #[test]
    fn roles_default_to_customer_and_unknown_ones_are_ignored() {
        let token = hs256(&claims(json!({})));
        let verified = verifier(Expected::default()).verify(&token).unwrap();
        assert_eq!(verified.sub, Uuid::nil().to_string());
        assert_eq!(verified.roles, HashSet::from([Role::Customer]));
        assert_eq!(roles(json!(null)), HashSet::from([Role::Customer]));
        assert_eq!(roles(json!([])), HashSet::from([Role::Customer]));
        assert_eq!(
            roles(json!(["admin", "root"])),
            HashSet::from([Role::Customer])
        );
        assert_eq!(
            roles(json!(["staff", "admin", "operator"])),
            HashSet::from([Role::Staff, Role::Operator])
        );
        assert_eq!(roles(json!(["service"])), HashSet::from([Role::Service]));
    }

    #[test]
    fn roles_that_are_not_a_list_of_names_are_refused() {
        let v = verifier(Expected::default());
        for bad in [json!("staff"), json!([1]), json!({"staff": true})] {
            let token = hs256(&claims(json!({ "roles": bad })));
            assert!(
                matches!(v.verify(&token), Err(Unauthenticated::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn expired_future_and_unsigned_tokens_are_refused() {
        let v = verifier(Expected::default());
        let expired = hs256(&claims(json!({ "exp": now() - 120 })));
        assert_eq!(v.verify(&expired), Err(Unauthenticated::Expired));
        // Within the leeway, a token that just expired still passes.
        let just = hs256(&claims(json!({ "exp": now() - 5 })));
        assert!(v.verify(&just).is_ok());
        let early = hs256(&claims(json!({ "nbf": now() + 600 })));
        assert_eq!(v.verify(&early), Err(Unauthenticated::NotYetValid));
        let no_exp = hs256(&json!({ "sub": "x" }));
        assert_eq!(
            v.verify(&no_exp),
            Err(Unauthenticated::MissingClaim("exp".into()))
        );
        let no_sub = hs256(&json!({ "exp": now() + 600 }));
        assert!(matches!(
            v.verify(&no_sub),
            Err(Unauthenticated::Malformed(_))
        ));
        // `alg: none`, with the signature dropped.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let body = hs256(&claims(json!({})))
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(v.verify(&format!("{header}.{body}.")).is_err());
        assert!(matches!(
            v.verify("not.a.jwt"),
            Err(Unauthenticated::Malformed(_))
        ));
        assert!(v.verify("").is_err());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let key = EncodingKey::from_secret(b"another secret, of 32 bytes or more");
        let token = encode(&Header::default(), &claims(json!({})), &key).unwrap();
        let v = verifier(Expected::default());
        assert_eq!(v.verify(&token), Err(Unauthenticated::BadSignature));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_expected() {
        let expected = Expected {
            issuer: Some("https://id.example".into()),
            audience: Some("orders".into()),
            ..Expected::default()
        };
        let v = verifier(expected);
        let ok = json!({ "iss": "https://id.example", "aud": "orders" });
        assert!(v.verify(&hs256(&claims(ok))).is_ok());
        let many = json!({ "iss": "https://id.example", "aud": ["shop", "orders"] });
        assert!(v.verify(&hs256(&claims(many))).is_ok());
        for (extra, error) in [
            (
                json!({ "iss": "https://evil.example", "aud": "orders" }),
                Unauthenticated::WrongIssuer,
            ),
            (
                json!({ "aud": "orders" }),
                Unauthenticated::MissingClaim("iss".into()),
            ),
            (
                json!({ "iss": "https://id.example", "aud": "billing" }),
                Unauthenticated::WrongAudience,
            ),
            (
                json!({ "iss": "https://id.example" }),
                Unauthenticated::MissingClaim("aud".into()),
            ),
        ] {
            assert_eq!(
                v.verify(&hs256(&claims(extra.clone()))),
                Err(error),
                "{extra}"
            );
        }
        // Not expected, they are not looked at.
        let any = json!({ "iss": "whoever", "aud": "whatever" });
        assert!(verifier(Expected::default())
            .verify(&hs256(&claims(any)))
            .is_ok());
    }

    #[test]
    fn a_uuid_sub_must_be_canonical_and_iss_a_string() {
        let v = verifier(Expected::default());
        let id = Uuid::new_v4();
        for sub in [
            id.to_string().to_uppercase(),
            format!("{{{id}}}"),
            id.simple().to_string(),
            format!("urn:uuid:{id}"),
        ] {
            let token = hs256(&claims(json!({ "sub": sub })));
            assert_eq!(
                v.verify(&token),
                Err(Unauthenticated::NonCanonicalSubject),
                "{sub}"
            );
        }
        for sub in [id.to_string(), "staff-1".into(), "ALICE".into()] {
            assert!(v.verify(&hs256(&claims(json!({ "sub": sub })))).is_ok());
        }
        for iss in [
            json!(1),
            json!(null),
            json!(["https://id.example"]),
            json!({}),
        ] {
            let token = hs256(&claims(json!({ "iss": iss })));
            assert!(
                matches!(v.verify(&token), Err(Unauthenticated::Malformed(_))),
                "{iss}"
            );
        }
        let token = hs256(&claims(json!({ "iss": "https://id.example" })));
        assert!(v.verify(&token).is_ok());
    }

    #[test]
    fn a_max_age_refuses_longer_lived_tokens_and_tokens_without_iat() {
        let v = verifier(Expected {
            max_age: Some(Duration::from_secs(600)),
            ..Expected::default()
        });
        let t = now();
        let ok = json!({ "iat": t, "exp": t + 600 });
        assert!(v.verify(&hs256(&claims(ok))).is_ok());
        let long = json!({ "iat": t, "exp": t + 601 });
        assert_eq!(
            v.verify(&hs256(&claims(long))),
            Err(Unauthenticated::TooLong(600))
        );
        assert_eq!(
            v.verify(&hs256(&claims(json!({ "exp": t + 60 })))),
            Err(Unauthenticated::MissingClaim("iat".into()))
        );
        let future = json!({ "iat": t + 3600, "exp": t + 3900 });
        assert_eq!(
            v.verify(&hs256(&claims(future))),
            Err(Unauthenticated::NotYetValid)
        );
        // Without a max age, iat is not needed and the lifetime not looked at.
        let long = json!({ "iat": t, "exp": t + 86_400 });
        assert!(verifier(Expected::default())
            .verify(&hs256(&claims(long)))
            .is_ok());
    }

    #[test]
    fn short_secrets_are_refused() {
        let e = Verifier::hs256(b"too short", Expected::default()).unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }

    #[test]
    fn rs256_and_es256_keys_are_told_apart_by_their_pem() {
        for (private, public, algorithm) in [
            (RS_PRIVATE, RS_PUBLIC, Algorithm::RS256),
            (ES_PRIVATE, ES_PUBLIC, Algorithm::ES256),
        ] {
            let v = Verifier::public_key_pem(public.as_bytes(), Expected::default()).unwrap();
            assert_eq!(v.algorithm(), algorithm);
            let key = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            };
            let token = encode(&Header::new(algorithm), &claims(json!({})), &key).unwrap();
            assert!(v.verify(&token).is_ok(), "{algorithm:?}");
            // A token signed with an HMAC key, as if the public key were a secret.
            let forged = EncodingKey::from_secret(public.as_bytes());
            let token = encode(&Header::default(), &claims(json!({})), &forged).unwrap();
            assert_eq!(
                v.verify(&token),
                Err(Unauthenticated::WrongAlgorithm(algorithm))
            );
        }
    }

    #[test]
    fn keys_that_cannot_verify_are_refused() {
        let expected = Expected::default;
        for (pem, says) in [
            ("not a key", "not a PEM"),
            (RS_PRIVATE, "not a public key"),
            (ES_PRIVATE, "not a public key"),
            (P384_PUBLIC, "P-256"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "RSA (RS256) or EC P-256",
            ),
        ] {
            let e = Verifier::public_key_pem(pem.as_bytes(), expected()).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn bearer_values_are_read_strictly() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc "), Ok("abc"));
        for bad in [
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer a b",
            "abc",
        ] {
            assert_eq!(
                bearer_token(bad),
                Err(Unauthenticated::MalformedHeader),
                "{bad:?}"
            );
        }
    }

    fn token_caller(sub: &str, roles: &[Role]) -> Caller {
        Caller::Token(Claims {
            sub: sub.into(),
            roles: roles.iter().copied().collect(),
        })
    }

    #[test]
    fn customers_reach_their_own_orders_only() {
        let me = Uuid::new_v4();
        let customer = token_caller(&me.to_string(), &[Role::Customer]);
        assert_eq!(customer.reach(), Reach::Customer(Some(me)));
        assert!(customer.may_access(Some(me)));
        assert!(!customer.may_access(Some(Uuid::new_v4())));
        assert!(!customer.may_access(None));
        assert!(!customer.may_manage() && !customer.may_operate());

        let nobody = token_caller("alice@example.com", &[Role::Customer]);
        assert_eq!(nobody.reach(), Reach::Customer(None));
        assert!(!nobody.may_access(None));
    }

    #[test]
    fn staff_service_and_operators_reach_every_order() {
        for (roles, operates) in [
            (&[Role::Staff][..], false),
            (&[Role::Service], false),
            (&[Role::Operator], true),
            (&[Role::Customer, Role::Staff], false),
        ] {
            let caller = token_caller("someone", roles);
            assert_eq!(caller.reach(), Reach::All, "{roles:?}");
            assert!(caller.may_access(None) && caller.may_manage(), "{roles:?}");
            assert_eq!(caller.may_operate(), operates, "{roles:?}");
        }
        let anyone = Caller::Anyone;
        assert!(anyone.may_access(None) && anyone.may_manage() && anyone.may_operate());
    }
}
