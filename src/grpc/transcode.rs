//! Between protobuf messages and the REST API's JSON. The proto mirrors the REST
//! shapes field for field (`proto/order/v1/order.proto`), so one walk over the
//! descriptors converts any message either way; only enum values are spelled
//! differently (`ORDER_STATUS_DRAFT` is REST's `"draft"`).

use super::proto::DESCRIPTORS;
use prost::{Message, Name};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind,
    MessageDescriptor, SerializeOptions,
};
use serde_json::Value;
use std::sync::LazyLock;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(DESCRIPTORS).expect("the descriptors compiled in decode")
});

/// The domain of the `google.rpc.ErrorInfo` of every refusal.
const ERROR_DOMAIN: &str = "order-service";

fn descriptor<M: Name>() -> MessageDescriptor {
    POOL.get_message_by_name(&M::full_name())
        .expect("every generated message is in the descriptors")
}

/// `message` as the REST API's JSON: fields left at their default left out, enum
/// values in REST spelling.
pub fn to_json<M: Message + Name>(message: &M) -> Result<Value, Status> {
    let desc = descriptor::<M>();
    let dynamic = DynamicMessage::decode(desc.clone(), message.encode_to_vec().as_slice())
        .map_err(internal)?;
    let options = SerializeOptions::new()
        .skip_default_fields(true)
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    let mut json = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(internal)?;
    respell(&desc, &mut json, Spelling::Rest);
    Ok(json)
}

/// The REST API's JSON as `M`: fields `M` does not have, REST's `null`s and
/// values an enum of `M` does not know are left out.
pub fn from_json<M: Message + Name + Default>(mut json: Value) -> Result<M, Status> {
    let desc = descriptor::<M>();
    respell(&desc, &mut json, Spelling::Proto);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic =
        DynamicMessage::deserialize_with_options(desc, json, &options).map_err(internal)?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(internal)
}

#[derive(Clone, Copy)]
enum Spelling {
    /// `ORDER_STATUS_DRAFT` becomes `"draft"`.
    Rest,
    /// `"draft"` becomes `ORDER_STATUS_DRAFT`.
    Proto,
}

/// Rewrites the JSON of a `desc` message, in place: enum values respelled, fields
/// named as REST names them, and fields without a proto value dropped.
fn respell(desc: &MessageDescriptor, json: &mut Value, to: Spelling) {
    let Value::Object(fields) = json else { return };
    *fields = std::mem::take(fields)
        .into_iter()
        .filter_map(|(name, mut value)| {
            let field = desc
                .get_field_by_name(&name)
                .or_else(|| desc.get_field_by_json_name(&name));
            match field {
                Some(field) => respell_field(&field, &mut value, to).then(|| {
                    let name = match to {
                        Spelling::Rest => rest_name(&field),
                        Spelling::Proto => field.name().to_owned(),
                    };
                    (name, value)
                }),
                None => Some((name, value)),
            }
        })
        .collect();
}

/// A field's REST name: its proto name, unless the proto gives it another
/// `json_name` than the default lowerCamelCase one.
fn rest_name(field: &FieldDescriptor) -> String {
    let mut camel = String::new();
    let mut upper = false;
    for c in field.name().chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                camel.extend(c.to_uppercase());
                upper = false;
            }
            c => camel.push(c),
        }
    }
    match field.json_name() == camel {
        true => field.name().to_owned(),
        false => field.json_name().to_owned(),
    }
}

/// Whether the field's `value` stays, respelled.
fn respell_field(field: &FieldDescriptor, value: &mut Value, to: Spelling) -> bool {
    if value.is_null() {
        // REST's null is proto's "not set"; a `google.protobuf.Value` keeps it.
        return matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Value");
    }
    let kind = match field.kind() {
        Kind::Message(entry) if field.is_map() => entry.map_entry_value_field().kind(),
        kind => kind,
    };
    let each: Vec<&mut Value> = match value {
        Value::Array(items) if field.is_list() => items.iter_mut().collect(),
        Value::Object(entries) if field.is_map() => entries.values_mut().collect(),
        one => vec![one],
    };
    for value in each {
        match &kind {
            Kind::Enum(e) => match (value.as_str().and_then(|v| respell_enum(e, v, to)), to) {
                (Some(spelled), _) => *value = Value::String(spelled),
                // A REST value the proto does not know (a `"pending"` status) is
                // "not given" there.
                (None, Spelling::Proto) => return false,
                (None, Spelling::Rest) => {}
            },
            Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => {
                respell(m, value, to)
            }
            _ => {}
        }
    }
    true
}

fn respell_enum(e: &EnumDescriptor, value: &str, to: Spelling) -> Option<String> {
    // Every enum's zero value is PREFIX_UNSPECIFIED.
    let zero = e.get_value(0)?;
    let prefix = zero.name().strip_suffix("UNSPECIFIED")?;
    match to {
        Spelling::Rest => Some(value.strip_prefix(prefix)?.to_lowercase()),
        Spelling::Proto => {
            let name = format!("{prefix}{}", value.to_uppercase());
            e.get_value_by_name(&name).map(|v| v.name().to_owned())
        }
    }
}

/// A REST refusal (a problem document) as a gRPC status: the code the proto's
/// table gives, the problem `code` as `error-code` metadata and as the
/// `google.rpc.ErrorInfo` reason, and the fields at fault as a
/// `google.rpc.BadRequest`.
pub fn refusal(http_status: u16, problem: &Value) -> Status {
    let code = problem["code"].as_str().unwrap_or("error");
    let detail = problem["detail"].as_str().unwrap_or(code);
    let mut details = ErrorDetails::with_error_info(code, ERROR_DOMAIN, []);
    for error in problem["errors"].as_array().into_iter().flatten() {
        let field = error["field"].as_str().unwrap_or_default();
        let message = error["message"].as_str().unwrap_or_default();
        details.add_bad_request_violation(field, message);
    }
    let mut status = Status::with_error_details(grpc_code(code, http_status), detail, details);
    if let Ok(value) = code.parse() {
        status.metadata_mut().insert("error-code", value);
    }
    status
}

/// The gRPC code of a REST refusal, from the HTTP status the API gave it (decided
/// once, in `api::error`), as the proto's table says; `order_busy`,
/// `version_conflict` and `change_in_progress`, conflicts worth retrying after a
/// read, are the ones the table sets apart.
fn grpc_code(code: &str, http_status: u16) -> Code {
    match (code, http_status) {
        ("order_busy" | "version_conflict" | "change_in_progress", _) => Code::Aborted,
        (_, 400 | 413 | 415 | 422) => Code::InvalidArgument,
        (_, 401) => Code::Unauthenticated,
        (_, 403) => Code::PermissionDenied,
        (_, 404) => Code::NotFound,
        (_, 402 | 409 | 410 | 428) => Code::FailedPrecondition,
        (_, 429) => Code::ResourceExhausted,
        (_, 502..=504) => Code::Unavailable,
        _ => Code::Internal,
    }
}

pub fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "gRPC transcoding failed");
    Status::internal(format!("the service failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::{
        CreateOrderRequest, GetOrderResponse, NewOrderItem, OrderStatus, PaymentStatus,
        StatusChange,
    };
    use serde_json::json;

    #[test]
    fn a_request_becomes_the_rest_body() {
        let request = CreateOrderRequest {
            currency: "USD".into(),
            items: vec![NewOrderItem {
                product_sku: "MUG-1".into(),
                quantity: 2,
                unit_price: "12.50".into(),
                ..Default::default()
            }],
            shipping_address: Some(prost_types::Struct {
                fields: [(
                    "city".to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue("Oslo".into())),
                    },
                )]
                .into(),
            }),
            ..Default::default()
        };

        assert_eq!(
            to_json(&request).unwrap(),
            json!({
                "currency": "USD",
                "items": [{"product_sku": "MUG-1", "quantity": 2, "unit_price": "12.50"}],
                "shipping_address": {"city": "Oslo"},
            })
        );
    }

    #[test]
    fn a_rest_answer_becomes_the_message_with_enums_respelled() {
        let order = json!({
            "order": {
                "id": "0b6f0a4e-8d8b-4c55-9d7c-1f0e0a3b9a11",
                "status": "confirmed",
                "payment_status": "partially_refunded",
                "customer_id": null,
                "total_amount": "25.00",
                "version": 3,
                "created_at": "2026-12-05T10:00:00Z",
                "amount_due": "0.00",
                "items": [{"id": 1, "quantity": 2, "cancelled_quantity": 0}],
                "metadata": {"channel": "web"},
            }
        });

        let message: GetOrderResponse = from_json(order).unwrap();

        let order = message.order.unwrap();
        assert_eq!(order.status(), OrderStatus::Confirmed);
        assert_eq!(order.payment_status(), PaymentStatus::PartiallyRefunded);
        assert_eq!(order.customer_id, None);
        assert_eq!(order.total_amount, "25.00");
        assert_eq!(order.version, 3);
        assert_eq!(order.items[0].quantity, 2);
        assert_eq!(order.created_at.unwrap().seconds, 1_796_464_800);
    }

    #[test]
    fn renamed_fields_and_unknown_values_follow_the_proto() {
        let entry = json!({"from": null, "to": "pending", "actor": "system", "version": 1});

        let change: StatusChange = from_json(entry).unwrap();

        assert_eq!(change.from_status(), OrderStatus::Unspecified);
        assert_eq!(change.to_status(), OrderStatus::Unspecified);
        assert_eq!(change.actor, "system");
        let change = StatusChange {
            from_status: OrderStatus::Draft as i32,
            to_status: OrderStatus::Confirmed as i32,
            ..Default::default()
        };
        assert_eq!(
            to_json(&change).unwrap(),
            json!({"from": "draft", "to": "confirmed"})
        );
    }

    #[test]
    fn a_problem_becomes_a_status_with_its_code_and_fields() {
        let problem = json!({
            "status": 422, "code": "validation_failed", "detail": "items[0].quantity: must be between 1 and 100000",
            "errors": [{"field": "items[0].quantity", "message": "must be between 1 and 100000"}],
        });

        let status = refusal(422, &problem);

        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.metadata().get("error-code").unwrap(),
            "validation_failed"
        );
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "validation_failed");
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "items[0].quantity");
        assert_eq!(grpc_code("not_cancellable", 409), Code::FailedPrecondition);
        assert_eq!(grpc_code("payment_declined", 402), Code::FailedPrecondition);
        assert_eq!(grpc_code("forbidden", 403), Code::PermissionDenied);
        assert_eq!(grpc_code("step_refused", 502), Code::Unavailable);
    }

    #[test]
    fn every_code_of_the_protos_table_follows_from_its_rest_status() {
        let table = [
            ("validation_failed", 422, Code::InvalidArgument),
            ("malformed_json", 400, Code::InvalidArgument),
            ("idempotency_key_reused", 422, Code::InvalidArgument),
            ("quantity_exceeded", 422, Code::InvalidArgument),
            ("return_window_closed", 422, Code::InvalidArgument),
            ("order_not_found", 404, Code::NotFound),
            ("return_not_found", 404, Code::NotFound),
            ("invalid_transition", 409, Code::FailedPrecondition),
            ("not_cancellable", 409, Code::FailedPrecondition),
            ("already_shipped", 409, Code::FailedPrecondition),
            ("payment_declined", 402, Code::FailedPrecondition),
            ("refund_refused", 409, Code::FailedPrecondition),
            ("order_busy", 409, Code::Aborted),
            ("unavailable", 503, Code::Unavailable),
            ("step_refused", 502, Code::Unavailable),
            ("unauthenticated", 401, Code::Unauthenticated),
            ("forbidden", 403, Code::PermissionDenied),
        ];
        for (code, status, grpc) in table {
            assert_eq!(grpc_code(code, status), grpc, "{code}");
        }
    }
}
