//! Generated bad requests against every mutating endpoint: whatever is wrong with a
//! request, the answer is a 4xx problem+json with a `code`, and nothing changes.

use crate::helpers::{mug_order, TestApp};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

const CASES: u32 = 2500;
const SEED: [u8; 32] = *b"order-service bad requests seed!";
/// No order has this id.
const MISSING: &str = "6f1c1a54-dead-4000-8000-000000000000";

/// Where a request goes.
#[derive(Debug, Clone)]
enum Endpoint {
    Create,
    CreateDraft,
    Pay(Target),
    Status(Target),
    Cancel(Target),
    CancelItems(Target),
    Return(Target),
    RefundItems(Target),
    Reject(Target),
    Unknown(Index),
}

/// The order a path names.
#[derive(Debug, Clone)]
enum Target {
    Missing,
    /// The draft made before the run; it must come out of it unchanged.
    Draft,
    NotAnId(Index),
}

/// What is wrong with the request. An `Index` picks among what the body offers.
#[derive(Debug, Clone)]
enum Mutation {
    DropRequired(Index),
    AddUnknown(Index, Index),
    DuplicateKey(Index, bool),
    ControlChar(Index, Index, char),
    WrongType(Index, Index),
    Huge(Index, Index),
    Negative(Index, Index),
    BadEnum(Index, Index),
    Garbage(Vec<u8>),
    Truncated(Index),
    ContentType(Index),
    IdempotencyKey(Index),
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Object,
    Array,
}

/// A valid body of an endpoint and where it can be broken (JSON pointers).
struct Spec {
    body: Value,
    required: &'static [&'static str],
    typed: &'static [(&'static str, Kind)],
    money: &'static [&'static str],
    quantities: &'static [&'static str],
    enums: &'static [(&'static str, &'static [&'static str])],
    /// Objects of a typed request, where an unknown field is refused (not inside
    /// addresses or metadata, which are free-form).
    objects: &'static [&'static str],
}

fn order_spec(body: Value) -> Spec {
    use Kind::*;
    Spec {
        body,
        required: &[
            "/currency",
            "/items",
            "/items/0/product_id",
            "/items/0/product_sku",
            "/items/0/product_name",
            "/items/0/warehouse_id",
            "/items/0/quantity",
            "/items/0/unit_price",
            "/payment/method",
        ],
        typed: &[
            ("/customer_id", Text),
            ("/currency", Text),
            ("/items", Array),
            ("/items/0", Object),
            ("/items/0/product_id", Text),
            ("/items/0/product_sku", Text),
            ("/items/0/product_name", Text),
            ("/items/0/warehouse_id", Text),
            ("/items/0/quantity", Int),
            ("/items/0/unit_price", Text),
            ("/items/0/discount_amount", Text),
            ("/items/0/tax_amount", Text),
            ("/shipping_amount", Text),
            ("/shipping_address", Object),
            ("/billing_address", Object),
            ("/notes", Text),
            ("/metadata", Object),
            ("/payment", Object),
            ("/payment/method", Text),
        ],
        money: &[
            "/items/0/unit_price",
            "/items/0/discount_amount",
            "/items/0/tax_amount",
            "/shipping_amount",
            "/payment/amount",
        ],
        quantities: &["/items/0/quantity"],
        enums: &[("/currency", &["usd", "XYZ", "", "US", "EURO", "US D", "€"])],
        objects: &["", "/items/0", "/payment"],
    }
}

fn spec(endpoint: &Endpoint) -> Spec {
    let mut order = mug_order(Some("pm_card_visa"));
    // Fixed ids, so that a failing case can be replayed as it is.
    order["customer_id"] = json!("6f1c1a54-0000-4000-8000-00000000c001");
    order["items"][0]["product_id"] = json!("6f1c1a54-0000-4000-8000-00000000b001");
    match endpoint {
        Endpoint::Create | Endpoint::Unknown(_) => order_spec(order),
        Endpoint::CreateDraft => {
            order.as_object_mut().unwrap().remove("payment");
            order_spec(order)
        }
        Endpoint::Pay(_) => Spec {
            // The draft's total: paying it would be valid if nothing were broken.
            body: json!({"method": "pm_card_visa", "amount": "103.10"}),
            required: &["/method"],
            typed: &[("/method", Kind::Text), ("/amount", Kind::Text)],
            money: &["/amount"],
            quantities: &[],
            enums: &[],
            objects: &[""],
        },
        Endpoint::Status(_) => Spec {
            body: json!({"status": "processing", "reason": "packed"}),
            required: &["/status"],
            typed: &[("/status", Kind::Text), ("/reason", Kind::Text)],
            money: &[],
            quantities: &[],
            enums: &[(
                "/status",
                &[
                    "bogus",
                    "Processing",
                    "PROCESSING",
                    "",
                    " processing",
                    "in_transit",
                ],
            )],
            objects: &[""],
        },
        // Valid but for the mutation: they would cancel the draft.
        Endpoint::Cancel(_) => Spec {
            body: json!({"reason": "changed my mind"}),
            required: &[],
            typed: &[("/reason", Kind::Text)],
            money: &[],
            quantities: &[],
            enums: &[],
            objects: &[""],
        },
        Endpoint::Return(_) => Spec {
            body: json!({"items": [{"item_id": 1, "quantity": 1, "reason": "too big"}], "reason": "fit"}),
            required: &["/items", "/items/0/item_id", "/items/0/quantity"],
            typed: &[
                ("/items", Kind::Array),
                ("/items/0", Kind::Object),
                ("/items/0/item_id", Kind::Int),
                ("/items/0/quantity", Kind::Int),
                ("/items/0/reason", Kind::Text),
                ("/reason", Kind::Text),
            ],
            money: &[],
            quantities: &["/items/0/quantity", "/items/0/item_id"],
            enums: &[],
            objects: &["", "/items/0"],
        },
        Endpoint::Reject(_) => Spec {
            body: json!({"reason": "damaged"}),
            required: &[],
            typed: &[("/reason", Kind::Text)],
            money: &[],
            quantities: &[],
            enums: &[],
            objects: &[""],
        },
        Endpoint::CancelItems(_) | Endpoint::RefundItems(_) => Spec {
            body: json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "one too many"}),
            required: &["/items", "/items/0/item_id", "/items/0/quantity"],
            typed: &[
                ("/items", Kind::Array),
                ("/items/0", Kind::Object),
                ("/items/0/item_id", Kind::Int),
                ("/items/0/quantity", Kind::Int),
                ("/reason", Kind::Text),
            ],
            money: &[],
            quantities: &["/items/0/quantity", "/items/0/item_id"],
            enums: &[],
            objects: &["", "/items/0"],
        },
    }
}

/// A request, ready to send.
struct Request {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    idempotency_key: Option<Vec<u8>>,
    body: Vec<u8>,
}

fn request(endpoint: &Endpoint, mutation: &Mutation, draft: &str) -> Request {
    let order_path = |target: &Target| match target {
        Target::Missing => MISSING.to_owned(),
        Target::Draft => draft.to_owned(),
        Target::NotAnId(i) => {
            let junk = [
                "not-a-uuid",
                "%FF",
                "%00",
                "123",
                "6f1c1a54-dead-4000-8000-00000000000g",
            ];
            junk[i.index(junk.len())].to_owned()
        }
    };
    let (method, path) = match endpoint {
        Endpoint::Create | Endpoint::CreateDraft => (Method::POST, "/orders".to_owned()),
        Endpoint::Pay(t) => (Method::POST, format!("/orders/{}/payments", order_path(t))),
        Endpoint::Status(t) => (Method::PUT, format!("/orders/{}/status", order_path(t))),
        Endpoint::Cancel(t) => (Method::POST, format!("/orders/{}/cancel", order_path(t))),
        Endpoint::CancelItems(t) => (
            Method::POST,
            format!("/orders/{}/cancel-items", order_path(t)),
        ),
        Endpoint::Return(t) => (Method::POST, format!("/orders/{}/returns", order_path(t))),
        Endpoint::RefundItems(t) => (
            Method::POST,
            format!("/orders/{}/refund-items", order_path(t)),
        ),
        // The draft has no return: the answer is a 4xx whatever the body.
        Endpoint::Reject(t) => (
            Method::POST,
            format!("/orders/{}/returns/{MISSING}/reject", order_path(t)),
        ),
        Endpoint::Unknown(i) => {
            let routes = [
                (Method::POST, format!("/orders/{draft}/bogus")),
                (Method::POST, "/nope".to_owned()),
                (Method::PUT, "/orders".to_owned()),
                (Method::DELETE, format!("/orders/{draft}")),
                (Method::PATCH, format!("/orders/{draft}/status")),
                (
                    Method::POST,
                    "/orders/by-number/ORD-20260101-000001".to_owned(),
                ),
                (Method::PUT, format!("/orders/{draft}/payments")),
                (Method::POST, format!("/orders/{draft}")),
            ];
            routes[i.index(routes.len())].clone()
        }
    };
    let spec = spec(endpoint);
    let mut request = Request {
        method,
        path,
        content_type: Some("application/json"),
        idempotency_key: None,
        body: vec![],
    };
    request.body = broken(&spec, mutation, &mut request).unwrap_or_else(|| {
        // Nothing of that kind in this body (no money in a status change): cut it.
        let text = spec.body.to_string();
        text.as_bytes()[..text.len() / 2].to_vec()
    });
    request
}

/// The body of `spec` broken by `mutation`, or `None` when the body has nothing it
/// applies to. Header mutations go to `request`.
fn broken(spec: &Spec, mutation: &Mutation, request: &mut Request) -> Option<Vec<u8>> {
    let mut body = spec.body.clone();
    match mutation {
        Mutation::DropRequired(i) => {
            let p = pick(&body, spec.required, i).filter(|p| body.pointer(p).is_some())?;
            let (parent, key) = parent(p);
            body.pointer_mut(parent)?.as_object_mut()?.remove(key);
        }
        Mutation::AddUnknown(i, name) => {
            let names = [
                "shiping_amount",
                "colour",
                "cvv",
                "extra",
                "Currency",
                "ID",
                "notes ",
            ];
            let object = pick(&body, spec.objects, i).filter(|p| body.pointer(p).is_some())?;
            let field = names[name.index(names.len())];
            body.pointer_mut(object)?
                .as_object_mut()?
                .insert(field.into(), json!("x"));
        }
        Mutation::DuplicateKey(i, same) => {
            let keys = keys(&body, "");
            let (object, key) = &keys[i.index(keys.len())];
            return Some(with_duplicate(&body, object, key, *same));
        }
        Mutation::ControlChar(i, at, c) => {
            // `(pointer, None)` is a string value, `(object, Some(key))` a key.
            let mut texts: Vec<_> = keys(&body, "")
                .into_iter()
                .map(|(object, key)| (object, Some(key)))
                .collect();
            texts.extend(strings(&body, "").into_iter().map(|p| (p, None)));
            let (pointer, key) = &texts[i.index(texts.len())];
            let insert = |s: &str| {
                let mut chars: Vec<char> = s.chars().collect();
                chars.insert(at.index(chars.len() + 1), *c);
                chars.into_iter().collect::<String>()
            };
            match key {
                None => {
                    let text = body.pointer_mut(pointer)?;
                    *text = json!(insert(text.as_str()?));
                }
                Some(key) => {
                    let object = body.pointer_mut(pointer)?.as_object_mut()?;
                    let value = object.remove(key)?;
                    object.insert(insert(key), value);
                }
            }
        }
        Mutation::WrongType(i, v) => {
            let present: Vec<_> = spec
                .typed
                .iter()
                .filter(|(p, _)| body.pointer(p).is_some())
                .collect();
            let (pointer, kind) = present[i.index(present.len())];
            // Never `null`: that is a valid value of an optional field.
            let wrong = match kind {
                Kind::Text => vec![
                    json!(7),
                    json!(1.5),
                    json!(true),
                    json!([1]),
                    json!({"a": 1}),
                ],
                Kind::Int => vec![
                    json!("7"),
                    json!(1.5),
                    json!(true),
                    json!([1]),
                    json!({"a": 1}),
                ],
                Kind::Object => vec![json!("x"), json!(7), json!(true), json!([1])],
                Kind::Array => vec![json!("x"), json!(7), json!(true), json!({"a": 1})],
            };
            *body.pointer_mut(pointer)? = wrong[v.index(wrong.len())].clone();
        }
        Mutation::Huge(i, v) => {
            let (pointer, values) = match pick(&body, spec.money, i) {
                Some(p) => (
                    p,
                    [
                        json!("99999999999999.99"),
                        json!("1000000000000.01"),
                        json!("1e15"),
                    ],
                ),
                None => (
                    pick(&body, spec.quantities, i)?,
                    [json!(100001), json!(u64::MAX), json!(1e30)],
                ),
            };
            let value = values[v.index(values.len())].clone();
            set(&mut body, pointer, value)?;
        }
        Mutation::Negative(i, v) => {
            let (pointer, values) = match pick(&body, spec.money, i) {
                Some(p) => (
                    p,
                    [json!("-1.00"), json!("-0.01"), json!("-99999999999999.99")],
                ),
                None => (
                    pick(&body, spec.quantities, i)?,
                    [json!(-1), json!(0), json!(i64::MIN)],
                ),
            };
            let value = values[v.index(values.len())].clone();
            set(&mut body, pointer, value)?;
        }
        Mutation::BadEnum(i, v) => {
            let (pointer, values) = spec.enums.get(i.index(spec.enums.len().max(1)))?;
            set(&mut body, pointer, json!(values[v.index(values.len())]))?;
        }
        Mutation::Garbage(bytes) => return Some(bytes.clone()),
        Mutation::Truncated(at) => {
            let text = body.to_string().into_bytes();
            return Some(text[..at.index(text.len())].to_vec());
        }
        Mutation::ContentType(i) => {
            let types = [
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("application/xml"),
                Some("text/json"),
                Some("multipart/form-data; boundary=x"),
                Some("application/jsonl"),
            ];
            request.content_type = types[i.index(types.len())];
        }
        Mutation::IdempotencyKey(i) => {
            let keys: [&[u8]; 5] = [&[b'k'; 256], &[b'k'; 2000], b"   ", b"", b"caf\xc3\xa9"];
            request.idempotency_key = Some(keys[i.index(keys.len())].to_vec());
        }
    }
    Some(body.to_string().into_bytes())
}

/// One of the pointers of `list` whose parent object is in `body`.
fn pick(body: &Value, list: &[&'static str], i: &Index) -> Option<&'static str> {
    let present: Vec<&'static str> = list
        .iter()
        .copied()
        .filter(|p| body.pointer(parent(p).0).is_some_and(Value::is_object))
        .collect();
    (!present.is_empty()).then(|| present[i.index(present.len())])
}

/// `"/items/0/sku"` -> `("/items/0", "sku")`.
fn parent(pointer: &str) -> (&str, &str) {
    pointer.rsplit_once('/').unwrap_or(("", pointer))
}

/// Sets the value at `pointer`, adding the key if its object lacks it.
fn set(body: &mut Value, pointer: &str, value: Value) -> Option<()> {
    let (parent, key) = parent(pointer);
    body.pointer_mut(parent)?
        .as_object_mut()?
        .insert(key.into(), value);
    Some(())
}

/// Every key of every object: `(pointer of the object, key)`.
fn keys(value: &Value, at: &str) -> Vec<(String, String)> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let mut found = vec![(at.to_owned(), k.clone())];
                found.extend(keys(v, &format!("{at}/{k}")));
                found
            })
            .collect(),
        Value::Array(items) => (0..items.len())
            .flat_map(|i| keys(&items[i], &format!("{at}/{i}")))
            .collect(),
        _ => vec![],
    }
}

/// The pointer of every string value.
fn strings(value: &Value, at: &str) -> Vec<String> {
    match value {
        Value::String(_) => vec![at.to_owned()],
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| strings(v, &format!("{at}/{k}")))
            .collect(),
        Value::Array(items) => (0..items.len())
            .flat_map(|i| strings(&items[i], &format!("{at}/{i}")))
            .collect(),
        _ => vec![],
    }
}

/// `body` as text with `key` of the object at `object` given twice, with the same
/// value or another one.
fn with_duplicate(body: &Value, object: &str, key: &str, same: bool) -> Vec<u8> {
    const PLACEHOLDER: &str = "__duplicate__";
    let mut body = body.clone();
    let map = body.pointer_mut(object).unwrap().as_object_mut().unwrap();
    let value = map.remove(key).unwrap();
    map.insert(PLACEHOLDER.into(), value.clone());
    let second = if same { value.clone() } else { json!("other") };
    let key = json!(key);
    body.to_string()
        .replacen(
            &format!("{}:{value}", json!(PLACEHOLDER)),
            &format!("{key}:{value},{key}:{second}"),
            1,
        )
        .into_bytes()
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    let target = prop_oneof![
        Just(Target::Missing),
        Just(Target::Draft),
        any::<Index>().prop_map(Target::NotAnId),
    ];
    prop_oneof![
        3 => Just(Endpoint::Create),
        2 => Just(Endpoint::CreateDraft),
        3 => target.clone().prop_map(Endpoint::Pay),
        3 => target.clone().prop_map(Endpoint::Status),
        2 => target.clone().prop_map(Endpoint::Cancel),
        3 => target.clone().prop_map(Endpoint::CancelItems),
        2 => target.clone().prop_map(Endpoint::Return),
        2 => target.clone().prop_map(Endpoint::RefundItems),
        1 => target.prop_map(Endpoint::Reject),
        1 => any::<Index>().prop_map(Endpoint::Unknown),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Unicode Cc: U+0000..U+001F and U+007F..U+009F. Tab and line breaks are allowed
    // in free text, so they are not injected (validation.rs tests them in a SKU).
    let control = (0u32..65).prop_map(|i| {
        let c = char::from_u32(if i < 32 { i } else { 0x7f + i - 32 }).unwrap();
        if matches!(c, '\t' | '\n' | '\r') {
            '\0'
        } else {
            c
        }
    });
    let index = any::<Index>;
    prop_oneof![
        index().prop_map(Mutation::DropRequired),
        (index(), index()).prop_map(|(i, n)| Mutation::AddUnknown(i, n)),
        (index(), any::<bool>()).prop_map(|(i, same)| Mutation::DuplicateKey(i, same)),
        (index(), index(), control).prop_map(|(i, at, c)| Mutation::ControlChar(i, at, c)),
        (index(), index()).prop_map(|(i, v)| Mutation::WrongType(i, v)),
        (index(), index()).prop_map(|(i, v)| Mutation::Huge(i, v)),
        (index(), index()).prop_map(|(i, v)| Mutation::Negative(i, v)),
        (index(), index()).prop_map(|(i, v)| Mutation::BadEnum(i, v)),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Garbage),
        index().prop_map(Mutation::Truncated),
        index().prop_map(Mutation::ContentType),
        index().prop_map(Mutation::IdempotencyKey),
    ]
}

#[test]
fn generated_bad_requests_get_a_4xx_problem_and_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    // Arrange: a draft, which holds a reservation, for the requests that name it.
    let (status, draft) = rt.block_on(app.create(&mug_order(None)));
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["status"], "draft");
    let draft_id = draft["id"].as_str().unwrap().to_owned();
    // The draft's own event goes out through the outbox first.
    let calls_before = rt.block_on(app.settled_ledger()).calls.len();

    // Act: one request per case, all against the one service (about 2 s in all).
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &SEED);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&(endpoint(), mutation()), |(endpoint, mutation)| {
        let request = request(&endpoint, &mutation, &draft_id);
        let mut headers: Vec<(&str, &[u8])> = vec![];
        if let Some(ct) = request.content_type {
            headers.push(("content-type", ct.as_bytes()));
        }
        if let Some(key) = &request.idempotency_key {
            headers.push(("idempotency-key", key));
        }
        let body = request.body.clone();
        let (status, problem, answer_headers) =
            rt.block_on(app.send_raw(request.method.clone(), &request.path, &headers, body));
        let content_type = answer_headers.get("content-type").map(|v| v.to_str().unwrap_or("?"));
        let ok = (400..500).contains(&status)
            && content_type == Some("application/problem+json")
            && problem["code"].is_string();
        let lossy = String::from_utf8_lossy;
        match ok {
            true => Ok(()),
            false => Err(TestCaseError::fail(format!(
                "{} {} (content-type {:?}, idempotency-key {:?}) {} -> {status} {content_type:?} {problem}",
                request.method,
                request.path,
                request.content_type,
                request.idempotency_key.as_deref().map(lossy),
                lossy(&request.body),
            ))),
        }
    });
    result.unwrap();

    // Assert: nothing was created, the draft is as it was, no downstream call.
    let others = format!("SELECT count(*) FROM orders WHERE id <> '{draft_id}'");
    assert_eq!(rt.block_on(app.count(&others)), 0);
    let (_, after) = rt.block_on(app.get(&format!("/orders/{draft_id}")));
    assert_eq!(after["status"], "draft");
    assert_eq!(after["version"], draft["version"], "{after}");
    let after_calls = rt.block_on(app.settled_ledger()).calls.len();
    assert_eq!(after_calls, calls_before, "no downstream call");
}
