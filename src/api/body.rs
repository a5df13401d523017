//! The request body reader. Every JSON body passes here once, before a handler sees
//! it: it must be `application/json`, well-formed, free of duplicate keys (a
//! `serde_json::Value` would silently keep the last) and of control characters
//! (PostgreSQL refuses NUL in text and jsonb, which would fail the saga later), and
//! it must have no field the request type does not know.

use super::error::ApiError;
use super::MAX_BODY_BYTES;
use crate::domain::FieldError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// A JSON request body, read and checked as the module doc says.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_body(&body).map(JsonBody)
    }
}

impl JsonBody {
    /// The body `bytes` under `headers`, checked as a request body is.
    pub fn from_bytes(headers: &HeaderMap, bytes: &[u8]) -> Result<JsonBody, ApiError> {
        if !is_json(headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_body(bytes).map(JsonBody)
    }
}

/// The rules a request body must keep beyond its shape, each broken one a field at
/// fault.
pub trait Rules {
    fn rules(&self) -> Vec<FieldError>;
}

/// A JSON body read as `T` and checked by its [`Rules`]: `422` naming the fields
/// at fault otherwise. The JSON as sent is kept for the idempotency hash.
pub struct Valid<T> {
    pub body: T,
    pub json: Value,
}

impl<S: Send + Sync, T: DeserializeOwned + Rules> FromRequest<S> for Valid<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Valid::check(JsonBody::from_request(req, state).await?)
    }
}

impl<T: DeserializeOwned + Rules> Valid<T> {
    /// `body` read as `T` and checked by its rules.
    pub fn check(JsonBody(json): JsonBody) -> Result<Self, ApiError> {
        let body: T = from_value(json.clone())?;
        let errors = body.rules();
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(Valid { body, json })
    }
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("");
    match essence.trim().to_ascii_lowercase().split_once('/') {
        Some(("application", sub)) => sub == "json" || (sub.len() > 5 && sub.ends_with("+json")),
        _ => false,
    }
}

/// Turns a body-reading rejection (too large, unreadable) into a problem.
pub(super) fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(MAX_BODY_BYTES)
    } else {
        ApiError::MalformedJson(rejection.body_text())
    }
}

/// Parses a body as JSON: `400` when it is not JSON, `422` naming each duplicate key
/// and each string or key with a control character.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let problems = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let node = Node {
        path: String::new(),
        free_text: false,
        problems: &problems,
    };
    // Problems are collected, not raised, so that a body that is not JSON at all is
    // still a 400 whatever it holds before the syntax error.
    let value = node
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let problems = problems.into_inner();
    match problems.is_empty() {
        true => Ok(value),
        false => Err(ApiError::Validation(problems)),
    }
}

/// Reads `value` as `T`, naming the field that is missing, unknown or of the wrong
/// type.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        // An unknown field (`deny_unknown_fields`) is already in the path.
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        let field = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(missing) if path == "." => missing.to_owned(),
            Some(missing) => format!("{path}.{missing}"),
            None if path == "." => "body".to_owned(),
            None => path,
        };
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

/// Values under these keys are free text, where line breaks and tabs are allowed.
/// Every other string (ids, SKUs, names, methods, statuses, currencies) and every
/// object key refuses all control characters (Unicode Cc).
const FREE_TEXT: [&str; 8] = [
    "notes",
    "note",
    "reason",
    "message",
    "address",
    "shipping_address",
    "billing_address",
    "metadata",
];

/// The largest whole number an `f64` holds exactly (2^53).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Enough to fix a request; a body full of NULs does not get a huge answer.
const MAX_PROBLEMS: usize = 20;

/// One JSON value at `path` (`items[0].product_sku`), built like `serde_json::Value`
/// while noting the problems of the module doc.
struct Node<'a> {
    path: String,
    free_text: bool,
    problems: &'a RefCell<Vec<FieldError>>,
}

impl Node<'_> {
    fn child(&self, path: String, free_text: bool) -> Node<'_> {
        Node {
            path,
            free_text,
            problems: self.problems,
        }
    }

    fn check_text(&self, path: &str, text: &str, free_text: bool) {
        let allowed = |c: char| free_text && matches!(c, '\n' | '\r' | '\t');
        if text.chars().any(|c| c.is_control() && !allowed(c)) {
            self.problem(path, "must not contain control characters");
        }
    }

    fn problem(&self, path: &str, message: &str) {
        let mut problems = self.problems.borrow_mut();
        if problems.len() < MAX_PROBLEMS {
            let field = if path.is_empty() { "body" } else { path };
            problems.push(FieldError::new(field, message));
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has one kind of number, and to JSON Schema (so to the OpenAPI
        // document) `2.0` is the integer 2: a whole number is read as one, so that
        // `"quantity": 2.0` is taken. Free text (metadata, addresses) keeps what
        // was sent.
        if !self.free_text && v.fract() == 0.0 && v.abs() <= MAX_EXACT_INTEGER {
            return Ok((v as i64).into());
        }
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        self.check_text(&self.path, v, self.free_text);
        Ok(Value::String(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(self.child(path, self.free_text))? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = match self.path.is_empty() {
                true => key.clone(),
                false => format!("{}.{key}", self.path),
            };
            self.check_text(&path, &key, false);
            let free_text = self.free_text || FREE_TEXT.contains(&key.as_str());
            let value = map.next_value_seed(self.child(path.clone(), free_text))?;
            if object.insert(key, value).is_some() {
                self.problem(&path, "must be given only once");
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(body: &str) -> Vec<String> {
        match parse_body(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"a":[1,-2,1.5,"x",null,true,{"b":{}}],"c":18446744073709551615}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse_body(text.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn whole_numbers_are_integers_except_in_free_text() {
        let body = r#"{"items":[{"quantity":2.0,"item_id":1e1}],"metadata":{"w":2.0},"x":2.5}"#;
        assert_eq!(
            parse_body(body.as_bytes()).unwrap(),
            json!({"items": [{"quantity": 2, "item_id": 10}], "metadata": {"w": 2.0}, "x": 2.5})
        );
    }

    #[test]
    fn duplicate_keys_are_named_at_any_depth() {
        assert_eq!(fields(r#"{"notes":"a","notes":"b"}"#), ["notes"]);
        assert_eq!(
            fields(r#"{"items":[{},{"sku":"a","sku":"a"}]}"#),
            ["items[1].sku"]
        );
    }

    #[test]
    fn control_characters_are_refused_except_line_breaks_in_free_text() {
        assert_eq!(fields(r#"{"notes":"a\u0000"}"#), ["notes"]);
        assert_eq!(fields(r#"{"items":[{"sku":"a\nb"}]}"#), ["items[0].sku"]);
        assert_eq!(
            fields(r#"{"metadata":{"k\u0001":"v"}}"#),
            ["metadata.k\u{1}"]
        );
        assert_eq!(
            fields(r#"{"payment":{"method":"\u0085"}}"#),
            ["payment.method"]
        );
        assert_eq!(fields(r#""\u007f""#), ["body"]);
        let free = r#"{"notes":"a\r\n\tb","shipping_address":{"line1":"x\ny"}}"#;
        assert_eq!(
            parse_body(free.as_bytes()).unwrap(),
            json!({"notes": "a\r\n\tb", "shipping_address": {"line1": "x\ny"}})
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_whatever_it_holds_first() {
        for body in [r#"{"notes":"\u0000","#, "", "{} {}", "\"\\ud800\""] {
            let result = parse_body(body.as_bytes());
            assert!(
                matches!(result, Err(ApiError::MalformedJson(_))),
                "{body}: {result:?}"
            );
        }
    }

    #[test]
    fn content_types() {
        let is = |ct: &str| {
            is_json(&HeaderMap::from_iter([(
                header::CONTENT_TYPE,
                ct.parse().unwrap(),
            )]))
        };
        assert!(is("application/json"));
        assert!(is("Application/JSON; charset=utf-8"));
        assert!(is("application/merge-patch+json"));
        for ct in [
            "text/plain",
            "application/xml",
            "application/x-www-form-urlencoded",
            "text/json",
            "application/+json",
            "application/jsonx",
        ] {
            assert!(!is(ct), "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
