//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the whole API, made from
//! the handlers' `#[utoipa::path]` attributes and the request and answer types
//! themselves, so that it changes with the code. The end-to-end tests check it
//! against the routes and the real answers.

pub mod shapes;

use super::auth::needs_token;
use super::{
    analytics, cancel, change_requests, changes, claims, console, exchanges, health, metrics, ops,
    orders, returns, ApiState,
};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::LazyLock;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApiVersion, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The document's route (under `/api/v1`).
pub fn router() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(serve))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Order service",
        description = "Orders as durable sagas: create, pay, move along the fulfilment \
            path, cancel, return and refund; the operators' view of what is stuck. \
            Money is a decimal string, never a number; every refusal is \
            `application/problem+json`; every mutating call takes an `Idempotency-Key`."
    ),
    servers((url = "/")),
    paths(
        orders::create_order,
        orders::list_orders,
        orders::get_order,
        orders::get_order_by_number,
        orders::pay_order,
        orders::set_status,
        orders::status_history,
        orders::edit_history,
        analytics::get_analytics,
        cancel::cancel_order,
        cancel::cancel_items,
        returns::request_return,
        returns::list_returns,
        returns::receive_return,
        returns::reject_return,
        returns::refund_items,
        changes::create_quote,
        changes::list_quotes,
        changes::get_quote,
        changes::release_quote,
        changes::apply_change,
        changes::list_changes,
        changes::get_change,
        changes::pay_change,
        changes::cancel_change,
        changes::get_ledger,
        change_requests::create_request,
        change_requests::list_requests,
        change_requests::get_request,
        change_requests::accept_request,
        change_requests::decline_request,
        change_requests::withdraw_request,
        exchanges::request_exchange,
        exchanges::list_exchanges,
        exchanges::get_exchange,
        exchanges::receive_exchange,
        exchanges::pay_exchange,
        exchanges::cancel_exchange,
        claims::open_claim,
        claims::list_claims,
        claims::get_claim,
        claims::receive_claim,
        claims::resolve_claim,
        claims::reject_claim,
        ops::stuck,
        ops::retry_all,
        ops::timeline,
        ops::retry,
        ops::resolve,
        ops::retry_change,
        ops::resolve_change,
        health::live,
        health::dependencies,
        metrics::scrape,
        console::page,
        serve,
    ),
    components(schemas(super::error::Problem)),
    tags(
        (name = "orders", description = "Orders: create, read, list, pay, change status, cancel."),
        (name = "returns", description = "Returns of delivered orders and refunds without a return."),
        (name = "changes", description = "Changes after checkout: binding quotes, changes applied with If-Match, and the money ledger."),
        (name = "exchanges", description = "Exchanges of delivered orders, settled as one net amount when the parcel arrives."),
        (name = "claims", description = "Claims of damaged, missing or wrong items, resolved by refund, replacement or both."),
        (name = "operators", description = "What is stuck and what an operator can do about it."),
        (name = "health", description = "Liveness, dependencies, metrics and this document."),
    ),
    modifiers(&Conventions)
)]
struct ApiDoc;

/// The document, as served.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.openapi = OpenApiVersion::Version31;
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document, made once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("the OpenAPI document serializes")
});

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object))
)]
async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// What every operation shares and its attribute does not repeat: the bearer
/// token where the authentication layer asks for one, the refusals of the body
/// reader wherever there is a body, and query parameters that may be given empty.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT, when authorization is on (`ORDER_AUTH_JWT_SECRET` or \
                 `ORDER_AUTH_JWT_PUBLIC_KEY_FILE`); its `roles` decide what the caller may do.",
            ))
            .build();
        components.add_security_scheme("bearerAuth", SecurityScheme::Http(bearer));
        strict_operations(components);
        one_change_source(components);

        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if needs_token(path) {
                    secure(operation);
                }
                if operation.request_body.is_some() {
                    body_refusals(operation);
                }
                let parameters = operation.parameters.iter_mut().flatten();
                parameters
                    .filter(|p| p.parameter_in == ParameterIn::Query)
                    .for_each(allow_empty);
            }
        }
    }
}

/// A problem answer: `description` says when, and with which codes.
fn problem(description: &str) -> utoipa::openapi::Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", content)
        .build()
}

fn secure(operation: &mut Operation) {
    let requirement = SecurityRequirement::new("bearerAuth", Vec::<String>::new());
    operation.security = Some(vec![requirement]);
    operation.responses.responses.insert(
        "401".into(),
        problem(
            "`unauthenticated`: no valid bearer token, when authorization is on; \
             with a `WWW-Authenticate` challenge.",
        )
        .into(),
    );
}

/// Every handler reads a query parameter that is empty (or blank) as one not
/// given: OpenAPI's `allowEmptyValue`, which utoipa's `Parameter` has no field for.
fn allow_empty(parameter: &mut Parameter) {
    let extensions = parameter.extensions.get_or_insert_with(Default::default);
    extensions.insert("allowEmptyValue".into(), true.into());
}

fn body_refusals(operation: &mut Operation) {
    let refusals = [
        (
            "400",
            "`malformed_json`: the body is not well-formed JSON (or has a duplicate key \
             or a control character); `errors` names `body`.",
        ),
        (
            "413",
            "`payload_too_large`: the body is larger than 256 KiB.",
        ),
        (
            "415",
            "`unsupported_media_type`: the body is not `application/json`.",
        ),
    ];
    for (status, description) in refusals {
        let responses = &mut operation.responses.responses;
        if !responses.contains_key(status) {
            responses.insert(status.into(), problem(description).into());
        }
    }
}

/// A change's operations, as strict as the service reads them: no field beyond
/// those of its `op`. An `add_item` is a new item's fields and its `op` (utoipa
/// would say "all of NewItem and `op`", which NewItem's own strictness forbids).
fn strict_operations(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(Schema::Object(new_item))) = components.schemas.get("NewItem").cloned()
    else {
        return;
    };
    let Some(RefOr::T(Schema::OneOf(variants))) = components.schemas.get_mut("Operation") else {
        return;
    };
    for variant in variants.items.iter_mut() {
        match variant {
            RefOr::T(Schema::AllOf(_)) => {
                let mut add_item = new_item.clone();
                let op = ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["add_item"]));
                add_item.properties.insert("op".into(), op.into());
                add_item.required.push("op".into());
                add_item.description = Some("A new item.".into());
                *variant = RefOr::T(Schema::Object(add_item));
            }
            RefOr::T(Schema::Object(object)) => {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
            _ => {}
        }
    }
}

/// A change names exactly one of `quote_id` and `operations`.
fn one_change_source(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::{
        AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
    };
    use utoipa::openapi::RefOr;
    let Some(body) = components.schemas.remove("ChangeRequestBody") else {
        return;
    };
    let quote = ObjectBuilder::new().required("quote_id").property(
        "quote_id",
        ObjectBuilder::new().schema_type(Type::String).format(Some(
            utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid),
        )),
    );
    let operations = ObjectBuilder::new()
        .required("operations")
        .property("operations", ArrayBuilder::new().min_items(Some(1)));
    let source = OneOfBuilder::new().item(quote).item(operations);
    let whole = AllOfBuilder::new().item(body).item(source).build();
    components
        .schemas
        .insert("ChangeRequestBody".into(), RefOr::T(Schema::AllOf(whole)));
}

#[cfg(test)]
mod tests {
    use super::document;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::to_value(document()).unwrap()
    }

    /// Every `$ref` of `value`.
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    found.push(r.clone());
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn is_openapi_3_1_with_the_crate_version() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Order service");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["servers"][0]["url"], "/");
    }

    #[test]
    fn every_reference_names_a_component() {
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").expect(&r);
            assert!(doc["components"]["schemas"][name].is_object(), "{r}");
        }
    }
}
