//! gRPC: every call of `order.v1.OrderService` does what its REST twin does and
//! answers the same order; refusals are gRPC codes with the problem code in
//! `error-code`; reflection and health are served; and with authorization on, a
//! token reaches over gRPC exactly what it reaches over REST.

use crate::authorization::{customer, secured, staff};
use crate::helpers::{delivered_order, mug_order, OrderLedger, TestApp};
use order_service::grpc::proto::order_service_client::OrderServiceClient;
use order_service::grpc::proto::*;
use prost_types::{value::Kind, Struct, Timestamp};
use serde_json::{json, Value};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn client(app: &TestApp) -> OrderServiceClient<Channel> {
    OrderServiceClient::new(channel(app).await)
}

/// The seed's example order (2 x 50.00, discount 10.00, tax 8.10, shipping 5.00)
/// for `customer`, paid with `method` when given.
fn mug(customer: Uuid, method: Option<&str>) -> CreateOrderRequest {
    let city = prost_types::Value {
        kind: Some(Kind::StringValue("Springfield".into())),
    };
    CreateOrderRequest {
        customer_id: Some(customer.to_string()),
        currency: "USD".into(),
        items: vec![NewOrderItem {
            product_id: Uuid::new_v4().to_string(),
            product_sku: "SKU-MUG".into(),
            product_name: "Mug".into(),
            warehouse_id: "6f1c1a54-0000-4000-8000-000000000001".into(),
            quantity: 2,
            unit_price: "50.00".into(),
            discount_amount: "10.00".into(),
            tax_amount: "8.10".into(),
        }],
        shipping_amount: "5.00".into(),
        shipping_address: Some(Struct {
            fields: [("city".to_owned(), city)].into(),
        }),
        payment: method.map(|m| Payment {
            method: m.into(),
            amount: None,
        }),
        ..Default::default()
    }
}

/// REST's spelling of a proto enum value: `ORDER_STATUS_DRAFT` is `"draft"`.
fn rest(proto_name: &str, prefix: &str) -> String {
    proto_name.strip_prefix(prefix).unwrap().to_lowercase()
}

/// Asserts that the gRPC order is the order REST answers now.
async fn assert_same_as_rest(app: &TestApp, order: &Order) {
    let (status, rest_order) = app.get(&format!("/orders/{}", order.id)).await;
    assert_eq!(status, 200, "{rest_order}");
    let proto = json!({
        "id": order.id,
        "order_number": order.order_number,
        "customer_id": order.customer_id,
        "status": rest(order.status().as_str_name(), "ORDER_STATUS_"),
        "payment_status": rest(order.payment_status().as_str_name(), "PAYMENT_STATUS_"),
        "currency": order.currency,
        "subtotal": order.subtotal,
        "discount_amount": order.discount_amount,
        "tax_amount": order.tax_amount,
        "shipping_amount": order.shipping_amount,
        "total_amount": order.total_amount,
        "captured_amount": order.captured_amount,
        "refunded_amount": order.refunded_amount,
        "version": order.version,
        "city": order.shipping_address.as_ref().map(|a| match &a.fields["city"].kind {
            Some(Kind::StringValue(city)) => city.clone(),
            _ => String::new(),
        }),
        "items": order.items.iter().map(|i| json!([
            i.id, i.product_sku, i.quantity, i.unit_price, i.total_price,
            i.cancelled_quantity, i.returned_quantity, i.refunded_quantity,
        ])).collect::<Vec<_>>(),
        "created_at": order.created_at.map(|t| t.seconds),
    });
    let r = &rest_order;
    let seconds = |t: &Value| {
        chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    let expected = json!({
        "id": r["id"], "order_number": r["order_number"], "customer_id": r["customer_id"],
        "status": r["status"], "payment_status": r["payment_status"], "currency": r["currency"],
        "subtotal": r["subtotal"], "discount_amount": r["discount_amount"],
        "tax_amount": r["tax_amount"], "shipping_amount": r["shipping_amount"],
        "total_amount": r["total_amount"], "captured_amount": r["captured_amount"],
        "refunded_amount": r["refunded_amount"], "version": r["version"],
        "city": r["shipping_address"]["city"],
        "items": r["items"].as_array().unwrap().iter().map(|i| json!([
            i["id"], i["product_sku"], i["quantity"], i["unit_price"], i["total_price"],
            i["cancelled_quantity"], i["returned_quantity"], i["refunded_quantity"],
        ])).collect::<Vec<_>>(),
        "created_at": seconds(&r["created_at"]),
    });
    assert_eq!(proto, expected);
}

/// `message` with `metadata` entries.
fn with<T>(message: T, metadata: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in metadata {
        let value: MetadataValue<_> = value.parse().unwrap();
        request.metadata_mut().insert(*name, value);
    }
    request
}

/// Asserts the refusal's gRPC code and its problem code (metadata and ErrorInfo).
fn assert_refused(status: &Status, code: Code, problem: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get("error-code")
            .map(|v| v.to_str().unwrap()),
        Some(problem),
        "{status:?}"
    );
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        (problem, "order-service")
    );
}

/// The fields a `validation_failed` refusal names.
fn fields_at_fault(status: &Status) -> Vec<String> {
    let details = status.get_error_details();
    let violations = details.bad_request().map(|b| b.field_violations.clone());
    violations
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.field)
        .collect()
}

#[tokio::test]
async fn a_paid_order_lives_its_whole_life_over_grpc() {
    let app = TestApp::spawn().await;
    let mut grpc = client(&app).await;
    let customer_id = Uuid::new_v4();
    let request = mug(customer_id, Some("pm_card_visa"));

    let created = grpc
        .create_order(with(request.clone(), &[("idempotency-key", "g-1")]))
        .await
        .unwrap()
        .into_inner();
    let order = created.order.unwrap();
    assert!(!created.accepted);
    assert_eq!(order.status(), OrderStatus::Confirmed);
    assert_eq!(
        (order.total_amount.as_str(), order.captured_amount.as_str()),
        ("103.10", "103.10")
    );
    assert_same_as_rest(&app, &order).await;
    // The same key is the same order, charged once.
    let again = grpc
        .create_order(with(request, &[("idempotency-key", "g-1")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.order.unwrap().id, order.id);
    let ledger = OrderLedger::of(&app.settled_ledger().await, &order.id);
    assert_eq!(ledger.captures.len(), 1);

    let by_id = grpc
        .get_order(GetOrderRequest {
            id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.order.as_ref(), Some(&order));
    let by_number = grpc
        .get_order_by_number(GetOrderByNumberRequest {
            order_number: order.order_number.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_number.order.unwrap().id, order.id);
    let listed = grpc
        .list_orders(ListOrdersRequest {
            customer_id: Some(customer_id.to_string()),
            status: OrderStatus::Confirmed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        (ids, listed.next_cursor.as_str()),
        (vec![order.id.as_str()], "")
    );

    for (n, to) in [
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ]
    .into_iter()
    .enumerate()
    {
        let moved = grpc
            .update_order_status(UpdateOrderStatusRequest {
                id: order.id.clone(),
                status: to as i32,
                reason: "warehouse scan".into(),
                idempotency_key: format!("move-{n}"),
            })
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(moved.status(), to);
    }
    let history = grpc
        .get_status_history(GetStatusHistoryRequest {
            id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let moves: Vec<_> = history
        .iter()
        .map(|e| (e.from_status(), e.to_status()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (OrderStatus::Unspecified, OrderStatus::Draft),
            (OrderStatus::Draft, OrderStatus::Confirmed),
            (OrderStatus::Confirmed, OrderStatus::Processing),
            (OrderStatus::Processing, OrderStatus::Shipped),
            (OrderStatus::Shipped, OrderStatus::Delivered),
        ]
    );
    assert_eq!(history[2].reason.as_deref(), Some("warehouse scan"));

    // A return of one unit, received: restocked and refunded.
    let requested = grpc
        .create_return(CreateReturnRequest {
            order_id: order.id.clone(),
            items: vec![ReturnItem {
                item_id: 1,
                quantity: 1,
                reason: "too big".into(),
            }],
            idempotency_key: "ret-1".into(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(requested.status(), ReturnStatus::Requested);
    let received = grpc
        .receive_return(ReceiveReturnRequest {
            order_id: order.id.clone(),
            return_id: requested.return_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let order_return = received.order_return.unwrap();
    assert_eq!(
        (order_return.id.as_str(), order_return.status()),
        (requested.return_id.as_str(), ReturnStatus::Refunded)
    );
    let ledger = OrderLedger::of(&app.settled_ledger().await, &order.id);
    assert_eq!(
        ledger.refund_amounts(),
        vec![order_return.refund_amount.clone()]
    );
    assert_eq!(
        received.order.as_ref().unwrap().refunded_amount,
        order_return.refund_amount
    );
    let returns = grpc
        .list_returns(ListReturnsRequest {
            order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .returns;
    assert_eq!(returns, vec![order_return.clone()]);

    // The other unit, refunded without a return: this call's refund is the ledger's.
    let refunded = grpc
        .refund_items(RefundItemsRequest {
            id: order.id.clone(),
            items: vec![ItemQuantity {
                item_id: 1,
                quantity: 1,
            }],
            reason: "damaged".into(),
            idempotency_key: "refund-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let ledger = OrderLedger::of(&app.settled_ledger().await, &order.id);
    assert_eq!(
        ledger.refund_amounts(),
        vec![
            order_return.refund_amount.clone(),
            refunded.refunded_amount.clone()
        ]
    );
    let after = refunded.order.unwrap();
    assert_eq!(
        (
            after.items[0].returned_quantity,
            after.items[0].refunded_quantity
        ),
        (1, 1)
    );
    assert_same_as_rest(&app, &after).await;

    let edits = grpc
        .get_edit_history(GetEditHistoryRequest {
            id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let (_, rest_edits) = app.get(&format!("/orders/{}/edit-history", order.id)).await;
    assert_eq!(edits.len(), rest_edits.as_array().unwrap().len());
    let returned = edits
        .iter()
        .find(|e| e.field == "returned_quantity")
        .expect("the return is in the edit history");
    assert_eq!(returned.item_id, Some(1));
    assert!(!returned.actor.is_empty());

    let now = chrono::Utc::now().timestamp();
    let analytics = grpc
        .get_analytics(GetAnalyticsRequest {
            from_time: Some(Timestamp {
                seconds: now - 3600,
                nanos: 0,
            }),
            to_time: Some(Timestamp {
                seconds: now + 3600,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(analytics.order_count, 1);
    assert_eq!(analytics.counts_by_status.get("delivered"), Some(&1));
    assert_eq!(analytics.totals.len(), 1);
    assert_eq!(
        (
            analytics.totals[0].currency.as_str(),
            analytics.totals[0].total_order_value.as_str()
        ),
        ("USD", "103.10")
    );
    assert_eq!(analytics.cancellation_rate, 0.0);
}

#[tokio::test]
async fn drafts_cancels_and_rejected_returns_over_grpc() {
    let app = TestApp::spawn().await;
    let mut grpc = client(&app).await;

    let draft = grpc
        .create_order(mug(Uuid::new_v4(), None))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(draft.status(), OrderStatus::Draft);
    assert!(draft.expires_at.is_some());
    let paid = grpc
        .add_payment(AddPaymentRequest {
            id: draft.id.clone(),
            method: "pm_card_visa".into(),
            amount: Some("103.10".into()),
            idempotency_key: "pay-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let paid = paid.order.unwrap();
    assert_eq!(
        (paid.status(), paid.captured_amount.as_str()),
        (OrderStatus::Confirmed, "103.10")
    );

    // One unit cancelled, then the rest: every refund is the ledger's.
    let one = grpc
        .cancel_items(CancelItemsRequest {
            id: paid.id.clone(),
            items: vec![ItemQuantity {
                item_id: 1,
                quantity: 1,
            }],
            reason: "changed mind".into(),
            idempotency_key: "cancel-one".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(one.items[0].cancelled_quantity, 1);
    assert_same_as_rest(&app, &one).await;
    let all = grpc
        .cancel_order(CancelOrderRequest {
            id: paid.id.clone(),
            reason: "no longer needed".into(),
            idempotency_key: "cancel-all".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(
        (all.status(), all.refunded_amount.as_str()),
        (OrderStatus::Cancelled, "103.10")
    );
    let ledger = OrderLedger::of(&app.settled_ledger().await, &paid.id);
    assert_eq!(ledger.refunds.len(), 2);
    assert_eq!(ledger.releases.len(), 2);

    // A return rejected: nothing refunded.
    let delivered = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let order_id = delivered["id"].as_str().unwrap().to_owned();
    let requested = grpc
        .create_return(CreateReturnRequest {
            order_id: order_id.clone(),
            items: vec![ReturnItem {
                item_id: 1,
                quantity: 2,
                reason: String::new(),
            }],
            reason: "arrived broken".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let rejected = grpc
        .reject_return(RejectReturnRequest {
            order_id: order_id.clone(),
            return_id: requested.return_id.clone(),
            reason: "no parcel".into(),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let order_return = rejected.order_return.unwrap();
    assert_eq!(
        (order_return.status(), order_return.refund_amount.as_str()),
        (ReturnStatus::Rejected, "0.00")
    );
    assert_eq!(order_return.reason.as_deref(), Some("arrived broken"));
    assert_eq!(rejected.order.unwrap().refunded_amount, "0.00");
    let ledger = OrderLedger::of(&app.settled_ledger().await, &order_id);
    assert!(ledger.refunds.is_empty());
}

#[tokio::test]
async fn refusals_are_grpc_codes_with_the_problem_code_and_change_nothing() {
    let app = TestApp::spawn().await;
    let mut grpc = client(&app).await;

    let unknown = Uuid::new_v4().to_string();
    let e = grpc
        .get_order(GetOrderRequest { id: unknown })
        .await
        .unwrap_err();
    assert_refused(&e, Code::NotFound, "order_not_found");
    // As over REST, an id that cannot be one is no order's.
    let e = grpc
        .get_order(GetOrderRequest {
            id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::NotFound, "order_not_found");
    let e = grpc
        .get_order(GetOrderRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(fields_at_fault(&e), vec!["id"]);

    let mut bad = mug(Uuid::new_v4(), Some("pm_card_visa"));
    bad.currency = "usd".into();
    let e = grpc.create_order(bad).await.unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(fields_at_fault(&e), vec!["currency"]);
    // Proto3 cannot tell 0 from "not given": either is refused.
    let mut bad = mug(Uuid::new_v4(), Some("pm_card_visa"));
    bad.items[0].quantity = 0;
    let e = grpc.create_order(bad).await.unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(fields_at_fault(&e), vec!["items[0].quantity"]);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    assert!(app.ledger().reservations.is_empty());

    // A declined payment is an answer, not a refusal: the order failed.
    let declined = grpc
        .create_order(mug(Uuid::new_v4(), Some("pm_card_declined")))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(declined.status(), OrderStatus::Failed);
    assert_eq!(declined.failure.unwrap().code, "payment_declined");

    let delivered = delivered_order(&app, &mug_order(Some("pm_card_visa"))).await;
    let id = delivered["id"].as_str().unwrap().to_owned();
    let e = grpc
        .cancel_order(CancelOrderRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::FailedPrecondition, "not_cancellable");
    let e = grpc
        .update_order_status(UpdateOrderStatusRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");
    assert_eq!(fields_at_fault(&e), vec!["status"]);
    let e = grpc
        .cancel_items(CancelItemsRequest {
            id: id.clone(),
            items: vec![ItemQuantity {
                item_id: 9,
                quantity: 1,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::FailedPrecondition, "not_cancellable");

    // The same key with another request is refused.
    let customer_id = Uuid::new_v4();
    let first = mug(customer_id, Some("pm_card_visa"));
    grpc.create_order(with(first.clone(), &[("idempotency-key", "k")]))
        .await
        .unwrap();
    let mut other = first;
    other.items[0].quantity = 3;
    other.idempotency_key = "k".into();
    let e = grpc.create_order(other).await.unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "idempotency_key_reused");
    let (_, page) = app.get(&format!("/orders?customer_id={customer_id}")).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);
    assert_eq!(page["orders"][0]["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn an_oversize_order_id_or_filter_is_invalid_argument_not_internal() {
    let app = TestApp::spawn().await;
    let mut grpc = client(&app).await;
    // Too long for any URI: the REST twin could not even be asked.
    let huge = "a".repeat(70_000);

    let e = grpc
        .get_order(GetOrderRequest { id: huge.clone() })
        .await
        .unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");
    let e = grpc
        .cancel_order(CancelOrderRequest {
            id: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");
    let e = grpc
        .list_orders(ListOrdersRequest {
            customer_id: Some(huge),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::InvalidArgument, "validation_failed");

    // The server still answers.
    let e = grpc
        .get_order(GetOrderRequest {
            id: Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_refused(&e, Code::NotFound, "order_not_found");
}

#[tokio::test]
async fn reflection_and_health_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let app = TestApp::spawn().await;

    let mut reflection = ServerReflectionClient::new(channel(&app).await);
    let asks = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("order.v1.OrderService".into()),
    ]
    .map(|ask| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(ask),
    });
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(asks))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"order.v1.OrderService"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a file descriptor");
    };
    let file = <prost_types::FileDescriptorProto as prost::Message>::decode(
        files.file_descriptor_proto[0].as_slice(),
    )
    .unwrap();
    assert_eq!(file.name(), "order/v1/order.proto");
    let methods: Vec<_> = file.service[0].method.iter().map(|m| m.name()).collect();
    assert!(methods.contains(&"CreateOrder") && methods.contains(&"RejectReturn"));

    let mut health = HealthClient::new(channel(&app).await);
    for service in ["", "order.v1.OrderService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn a_token_reaches_over_grpc_what_it_reaches_over_rest() {
    let app = secured().await;
    let mut grpc = client(&app).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let as_alice = format!("Bearer {}", customer(alice));
    let as_bob = format!("Bearer {}", customer(bob));
    let as_staff = format!("Bearer {}", staff());

    let e = grpc
        .create_order(mug(alice, Some("pm_card_visa")))
        .await
        .unwrap_err();
    assert_refused(&e, Code::Unauthenticated, "unauthenticated");
    let e = grpc
        .create_order(with(
            mug(alice, Some("pm_card_visa")),
            &[("authorization", &as_bob)],
        ))
        .await
        .unwrap_err();
    assert_refused(&e, Code::PermissionDenied, "forbidden");

    let order = grpc
        .create_order(with(
            mug(alice, Some("pm_card_visa")),
            &[("authorization", &as_alice)],
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let get = |token: &str| {
        with(
            GetOrderRequest {
                id: order.id.clone(),
            },
            &[("authorization", token)],
        )
    };
    assert_eq!(
        grpc.get_order(get(&as_alice))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
            .id,
        order.id
    );
    let e = grpc.get_order(get(&as_bob)).await.unwrap_err();
    assert_refused(&e, Code::NotFound, "order_not_found");
    let everything = ListOrdersRequest::default();
    let bobs = grpc
        .list_orders(with(everything.clone(), &[("authorization", &as_bob)]))
        .await
        .unwrap()
        .into_inner();
    assert!(bobs.orders.is_empty());
    let alices = grpc
        .list_orders(with(everything, &[("authorization", &as_alice)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alices.orders.len(), 1);

    let move_on = UpdateOrderStatusRequest {
        id: order.id.clone(),
        status: OrderStatus::Processing as i32,
        ..Default::default()
    };
    let e = grpc
        .update_order_status(with(move_on.clone(), &[("authorization", &as_alice)]))
        .await
        .unwrap_err();
    assert_refused(&e, Code::PermissionDenied, "forbidden");
    let moved = grpc
        .update_order_status(with(move_on, &[("authorization", &as_staff)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(moved.status(), OrderStatus::Processing);
}

#[tokio::test]
async fn the_same_key_from_two_customers_makes_two_orders_over_grpc() {
    let app = secured().await;
    let mut grpc = client(&app).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let orders = [alice, bob].map(|who| (who, mug(who, Some("pm_card_visa"))));
    let create = |who: Uuid| {
        let token = format!("Bearer {}", customer(who));
        let order = orders.iter().find(|(w, _)| *w == who).unwrap().1.clone();
        with(
            order,
            &[("authorization", &token), ("idempotency-key", "checkout-1")],
        )
    };

    let mut made = Vec::new();
    for who in [alice, bob, alice] {
        let order = grpc
            .create_order(create(who))
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:?}"))
            .into_inner()
            .order
            .unwrap();
        assert_eq!(order.customer_id, Some(who.to_string()));
        assert_eq!(order.status(), OrderStatus::Confirmed);
        made.push(order.id);
    }
    assert_ne!(made[0], made[1], "each customer has its own order");
    assert_eq!(made[0], made[2], "a repeat is the first order again");
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 2);
}

/// api-changes.md §11: an exchange, a claim and the ledger over gRPC, each the
/// same as its REST twin, and their refusals with the REST problem code.
#[tokio::test]
async fn exchanges_claims_and_the_ledger_over_grpc() {
    let app = TestApp::spawn().await;
    let mut grpc = client(&app).await;
    let order = grpc
        .create_order(mug(Uuid::new_v4(), Some("pm_card_visa")))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    crate::helpers::advance(&app, &order.id, &["processing", "shipped", "delivered"]).await;
    let dearer = NewOrderItem {
        product_id: Uuid::new_v4().to_string(),
        product_sku: "SKU-MUG-L".into(),
        product_name: "Mug, large".into(),
        warehouse_id: Uuid::new_v4().to_string(),
        quantity: 1,
        unit_price: "60.00".into(),
        ..Default::default()
    };
    let asked = grpc
        .create_exchange(CreateExchangeRequest {
            order_id: order.id.clone(),
            return_items: vec![ReturnItem {
                item_id: 1,
                quantity: 1,
                reason: "too small".into(),
            }],
            new_items: vec![dearer],
            idempotency_key: "exchange-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .exchange
        .unwrap();
    assert_eq!(asked.status(), ExchangeStatus::Requested);
    assert_eq!(
        (asked.return_value.as_str(), asked.difference.as_str()),
        ("49.05", "10.95")
    );

    let settled = grpc
        .receive_exchange(ReceiveExchangeRequest {
            order_id: order.id.clone(),
            exchange_id: asked.exchange_id.clone(),
            idempotency_key: "exchange-1-receive".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .exchange
        .unwrap();
    assert_eq!(settled.status(), ExchangeStatus::Settled);
    let charge = settled
        .settlement
        .as_ref()
        .unwrap()
        .charge
        .as_ref()
        .unwrap();
    assert_eq!(charge.amount, "10.95");
    let path = format!("/orders/{}/exchanges/{}", order.id, asked.exchange_id);
    let (_, rest_exchange) = app.get(&path).await;
    assert_eq!(
        rest_exchange["settlement"]["charge"]["payment_id"],
        charge.payment_id.as_str()
    );
    assert_eq!(settled.new_items[0].item_id, Some(2));
    let listed = grpc
        .list_exchanges(ListExchangesRequest {
            order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.exchanges.len(), 1);

    let claim = grpc
        .create_claim(CreateClaimRequest {
            order_id: order.id.clone(),
            items: vec![ClaimItem {
                item_id: 2,
                quantity: 1,
                claim_type: ClaimType::Damaged as i32,
                note: Some("cracked".into()),
            }],
            idempotency_key: "claim-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .claim
        .unwrap();
    assert_eq!(claim.status(), ClaimStatus::Open);
    let resolved = grpc
        .resolve_claim(ResolveClaimRequest {
            order_id: order.id.clone(),
            claim_id: claim.claim_id.clone(),
            resolution: ClaimResolution::Replacement as i32,
            idempotency_key: "claim-1-resolve".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .claim
        .unwrap();
    assert_eq!(
        (resolved.status(), resolved.resolution()),
        (ClaimStatus::Resolved, ClaimResolution::Replacement)
    );
    assert_eq!(resolved.replacement_items[0].total_price, "60.00");
    let missing = grpc
        .get_claim(GetClaimRequest {
            order_id: order.id.clone(),
            claim_id: Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_refused(&missing, Code::NotFound, "claim_not_found");

    let ledger = grpc
        .get_ledger(GetLedgerRequest {
            order_id: order.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .ledger
        .unwrap();
    let (_, rest_ledger) = app.get(&format!("/orders/{}/ledger", order.id)).await;
    assert_eq!(ledger.charged, rest_ledger["charged"].as_str().unwrap());
    assert_eq!(ledger.payments.len(), 2);
    let charge_move = ledger
        .movements
        .iter()
        .find(|m| m.kind == "charge" && m.exchange_id.is_some());
    assert_eq!(
        charge_move.and_then(|m| m.exchange_id.clone()),
        Some(asked.exchange_id.clone())
    );
}
