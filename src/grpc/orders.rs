//! `order.v1.OrderService`: every call is its REST twin, run in process through
//! the same routes, so that authorization, validation, idempotency, the sagas and
//! every refusal are the REST API's own. What is left here is where each call's
//! fields go (path, query, body, headers) and how its answer is shaped.

use super::proto::order_service_server::OrderService;
use super::proto::*;
use super::transcode::{from_json, internal, refusal, to_json};
use crate::api::Produced;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::Router;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use prost::Name;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tonic::{Request, Response, Status};
use tower::ServiceExt;

/// The gRPC service over the API's routes ([`crate::api::routes`]).
#[derive(Clone)]
pub struct Orders {
    routes: Router,
}

impl Orders {
    pub fn new(routes: Router) -> Self {
        Orders { routes }
    }
}

/// The request metadata a REST call carries as headers.
const PASSED_ON: [&str; 4] = [
    "authorization",
    "idempotency-key",
    "traceparent",
    "tracestate",
];

/// What is escaped in a path segment or a query value: all but RFC 3986's
/// unreserved characters.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A REST call made from a gRPC request.
struct Call {
    method: Method,
    /// Under `/api/v1`, with its query.
    uri: String,
    body: Option<Value>,
    headers: HeaderMap,
}

/// A REST answer that succeeded.
struct Answer {
    status: u16,
    body: Value,
    /// The order version a command produced, when it says.
    produced: Option<i64>,
}

impl Answer {
    /// `202`: the saga goes on.
    fn accepted(&self) -> bool {
        self.status == 202
    }

    /// The order of a command's answer, and whether the saga goes on.
    fn order(self) -> Value {
        json!({ "order": self.body, "accepted": self.accepted() })
    }
}

/// `request` as the REST call `method path`: the fields named in `path` (as
/// `{field}`) go into the path, `idempotency_key` into its header, the rest into
/// the query of a `GET` or the JSON body of anything else.
fn call<M: prost::Message + Name>(
    method: Method,
    path: &str,
    request: &Request<M>,
) -> Result<Call, Status> {
    let Value::Object(mut fields) = to_json(request.get_ref())? else {
        return Err(internal("a message is not a JSON object"));
    };
    let mut uri = String::from("/api/v1");
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        uri.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(field) => {
                let value = match fields.remove(field) {
                    Some(Value::String(value)) if !value.trim().is_empty() => value,
                    _ => return Err(missing(field)),
                };
                uri.extend(utf8_percent_encode(&value, ESCAPED));
            }
            None => uri.push_str(segment),
        }
    }
    let mut headers = headers(request);
    // The request's own key wins over the metadata's.
    if let Some(Value::String(key)) = fields.remove("idempotency_key") {
        let key = HeaderValue::from_str(&key).map_err(|_| {
            Status::invalid_argument("idempotency_key: must be 1 to 255 visible ASCII characters")
        })?;
        headers.insert("idempotency-key", key);
    }
    let body = match method {
        Method::GET => {
            uri.push_str(&query(&fields));
            None
        }
        _ => Some(Value::Object(fields)),
    };
    Ok(Call {
        method,
        uri,
        body,
        headers,
    })
}

/// The headers the request's metadata gives the REST call.
fn headers<M>(request: &Request<M>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in PASSED_ON {
        for value in request.metadata().get_all(name).iter() {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
    }
    headers
}

/// The refusal of a request whose path or query fields do not fit in a URI.
fn too_long() -> Status {
    let problem = json!({
        "code": "validation_failed",
        "detail": "the request's ids or filters are far too long",
    });
    refusal(422, &problem)
}

fn missing(field: &str) -> Status {
    let problem = json!({
        "code": "validation_failed",
        "detail": format!("{field}: must be given"),
        "errors": [{"field": field, "message": "must be given"}],
    });
    refusal(422, &problem)
}

/// `?name=value&...` of the fields, or nothing.
fn query(fields: &Map<String, Value>) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let value = utf8_percent_encode(&value, ESCAPED);
            format!("{name}={value}")
        })
        .collect();
    match pairs.is_empty() {
        true => String::new(),
        false => format!("?{}", pairs.join("&")),
    }
}

impl Orders {
    /// Runs `call` on the API's routes: its answer, or its refusal as a status.
    async fn rest(&self, call: Call) -> Result<Answer, Status> {
        // Only the request's own fields can make the URI too long to be one.
        let uri: Uri = call.uri.parse().map_err(|_| too_long())?;
        let mut request = axum::http::Request::builder().method(call.method).uri(uri);
        if let Some(headers) = request.headers_mut() {
            headers.extend(call.headers);
        }
        let body = match call.body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&body).map_err(internal)?)
            }
            None => Body::empty(),
        };
        let request = request.body(body).map_err(internal)?;
        let response = self
            .routes
            .clone()
            .oneshot(request)
            .await
            .map_err(internal)?;
        let status = response.status().as_u16();
        let produced = response.extensions().get::<Produced>().map(|p| p.0);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(internal)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(Answer {
                status,
                body,
                produced,
            }),
            _ => Err(refusal(status, &body)),
        }
    }

    /// A `GET` of `uri` (under `/api/v1`) on behalf of `request`'s caller.
    async fn get<M>(&self, uri: String, request: &Request<M>) -> Result<Answer, Status> {
        let mut headers = headers(request);
        headers.remove("idempotency-key");
        self.rest(Call {
            method: Method::GET,
            uri,
            body: None,
            headers,
        })
        .await
    }

    /// Runs `request` as `method path` and answers with `shape` of the answer.
    async fn unary<M, R>(
        &self,
        method: Method,
        path: &str,
        request: Request<M>,
        shape: impl FnOnce(Answer) -> Value,
    ) -> Result<Response<R>, Status>
    where
        M: prost::Message + Name,
        R: prost::Message + Name + Default,
    {
        let answer = self.rest(call(method, path, &request)?).await?;
        Ok(Response::new(from_json(shape(answer))?))
    }

    /// A command on one of the order's returns: the order, and the return as the
    /// command left it.
    async fn return_command<M: prost::Message + Name>(
        &self,
        path: &str,
        request: Request<M>,
    ) -> Result<Value, Status> {
        let call = call(Method::POST, path, &request)?;
        // `.../orders/{order_id}/returns/{return_id}/<command>`
        let segments: Vec<&str> = call.uri.rsplitn(3, '/').collect();
        let (return_id, returns_uri) = (segments[1].to_owned(), segments[2].to_owned());
        let answer = self.rest(call).await?;
        let accepted = answer.accepted();
        let listed = self.get(returns_uri, &request).await?;
        let order_return = listed.body["returns"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["return_id"] == return_id.as_str())
            .cloned()
            .map(order_return);
        Ok(json!({ "order_return": order_return, "order": answer.body, "accepted": accepted }))
    }
}

/// One exchange or claim (`field`) of an answer, and whether its saga goes on.
fn one(field: &str, answer: Answer) -> Value {
    json!({ field: answer.body, "accepted": answer.accepted() })
}

/// A REST return as `OrderReturn`: its id is `id`, and what was refunded is
/// `"0.00"` until it is refunded.
fn order_return(mut rest: Value) -> Value {
    if let Value::Object(fields) = &mut rest {
        if let Some(id) = fields.remove("return_id") {
            fields.insert("id".into(), id);
        }
        if fields.get("refund_amount").is_none_or(Value::is_null) {
            fields.insert("refund_amount".into(), json!("0.00"));
        }
    }
    rest
}

/// What the refund that produced `version` refunded: the change of the order's
/// `refunded_amount` at that version, from its edit history.
fn refunded_at(history: &Value, version: i64) -> Option<String> {
    let entry = history.as_array()?.iter().find(|e| {
        e["field"] == "refunded_amount" && e["version"] == version && e["item_id"].is_null()
    })?;
    let amount = |v: &Value| v.as_str()?.parse::<Decimal>().ok();
    let refunded = amount(&entry["new"])? - amount(&entry["old"])?;
    Some(format!("{:.2}", refunded))
}

/// REST's analytics as `GetAnalyticsResponse`.
fn analytics(rest: Value) -> Value {
    let totals: Vec<Value> = rest["currencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "currency": c["currency"],
                "order_count": c["order_count"],
                "total_order_value": c["total_value"],
                "average_order_value": c["average_value"],
                "refunded_total": c["refunded_total"],
            })
        })
        .collect();
    json!({
        "counts_by_status": rest["by_status"],
        "order_count": rest["order_count"],
        "cancellation_rate": rest["cancellation_rate"],
        "totals": totals,
    })
}

#[tonic::async_trait]
impl OrderService for Orders {
    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        self.unary(Method::POST, "/orders", request, Answer::order)
            .await
    }

    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<GetOrderResponse>, Status> {
        self.unary(
            Method::GET,
            "/orders/{id}",
            request,
            |a| json!({ "order": a.body }),
        )
        .await
    }

    async fn get_order_by_number(
        &self,
        request: Request<GetOrderByNumberRequest>,
    ) -> Result<Response<GetOrderByNumberResponse>, Status> {
        let path = "/orders/by-number/{order_number}";
        self.unary(Method::GET, path, request, |a| json!({ "order": a.body }))
            .await
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        self.unary(Method::GET, "/orders", request, |a| a.body)
            .await
    }

    async fn update_order_status(
        &self,
        request: Request<UpdateOrderStatusRequest>,
    ) -> Result<Response<UpdateOrderStatusResponse>, Status> {
        let path = "/orders/{id}/status";
        self.unary(Method::PUT, path, request, |a| json!({ "order": a.body }))
            .await
    }

    async fn add_payment(
        &self,
        request: Request<AddPaymentRequest>,
    ) -> Result<Response<AddPaymentResponse>, Status> {
        let path = "/orders/{id}/payments";
        self.unary(Method::POST, path, request, Answer::order).await
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<CancelOrderResponse>, Status> {
        let path = "/orders/{id}/cancel";
        self.unary(Method::POST, path, request, Answer::order).await
    }

    async fn cancel_items(
        &self,
        request: Request<CancelItemsRequest>,
    ) -> Result<Response<CancelItemsResponse>, Status> {
        let path = "/orders/{id}/cancel-items";
        self.unary(Method::POST, path, request, Answer::order).await
    }

    async fn create_return(
        &self,
        request: Request<CreateReturnRequest>,
    ) -> Result<Response<CreateReturnResponse>, Status> {
        let path = "/orders/{order_id}/returns";
        self.unary(
            Method::POST,
            path,
            request,
            |a| json!({ "return_id": a.body["return_id"], "status": a.body["status"] }),
        )
        .await
    }

    async fn receive_return(
        &self,
        request: Request<ReceiveReturnRequest>,
    ) -> Result<Response<ReceiveReturnResponse>, Status> {
        let path = "/orders/{order_id}/returns/{return_id}/receive";
        let answer = self.return_command(path, request).await?;
        Ok(Response::new(from_json(answer)?))
    }

    async fn reject_return(
        &self,
        request: Request<RejectReturnRequest>,
    ) -> Result<Response<RejectReturnResponse>, Status> {
        let path = "/orders/{order_id}/returns/{return_id}/reject";
        let answer = self.return_command(path, request).await?;
        Ok(Response::new(from_json(answer)?))
    }

    async fn create_exchange(
        &self,
        request: Request<CreateExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let path = "/orders/{order_id}/exchanges";
        self.unary(Method::POST, path, request, |a| one("exchange", a))
            .await
    }

    async fn get_exchange(
        &self,
        request: Request<GetExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let path = "/orders/{order_id}/exchanges/{exchange_id}";
        self.unary(Method::GET, path, request, |a| one("exchange", a))
            .await
    }

    async fn list_exchanges(
        &self,
        request: Request<ListExchangesRequest>,
    ) -> Result<Response<ListExchangesResponse>, Status> {
        let path = "/orders/{order_id}/exchanges";
        self.unary(Method::GET, path, request, |a| a.body).await
    }

    async fn receive_exchange(
        &self,
        request: Request<ReceiveExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let path = "/orders/{order_id}/exchanges/{exchange_id}/receive";
        self.unary(Method::POST, path, request, |a| one("exchange", a))
            .await
    }

    async fn pay_exchange(
        &self,
        request: Request<PayExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let path = "/orders/{order_id}/exchanges/{exchange_id}/payments";
        self.unary(Method::POST, path, request, |a| one("exchange", a))
            .await
    }

    async fn cancel_exchange(
        &self,
        request: Request<CancelExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let path = "/orders/{order_id}/exchanges/{exchange_id}/cancel";
        self.unary(Method::POST, path, request, |a| one("exchange", a))
            .await
    }

    async fn create_claim(
        &self,
        request: Request<CreateClaimRequest>,
    ) -> Result<Response<ClaimResponse>, Status> {
        let path = "/orders/{order_id}/claims";
        self.unary(Method::POST, path, request, |a| one("claim", a))
            .await
    }

    async fn get_claim(
        &self,
        request: Request<GetClaimRequest>,
    ) -> Result<Response<ClaimResponse>, Status> {
        let path = "/orders/{order_id}/claims/{claim_id}";
        self.unary(Method::GET, path, request, |a| one("claim", a))
            .await
    }

    async fn list_claims(
        &self,
        request: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        let path = "/orders/{order_id}/claims";
        self.unary(Method::GET, path, request, |a| a.body).await
    }

    async fn receive_claim(
        &self,
        request: Request<ClaimCommandRequest>,
    ) -> Result<Response<ClaimResponse>, Status> {
        let path = "/orders/{order_id}/claims/{claim_id}/receive";
        self.unary(Method::POST, path, request, |a| one("claim", a))
            .await
    }

    async fn resolve_claim(
        &self,
        request: Request<ResolveClaimRequest>,
    ) -> Result<Response<ClaimResponse>, Status> {
        let path = "/orders/{order_id}/claims/{claim_id}/resolve";
        self.unary(Method::POST, path, request, |a| one("claim", a))
            .await
    }

    async fn reject_claim(
        &self,
        request: Request<ClaimCommandRequest>,
    ) -> Result<Response<ClaimResponse>, Status> {
        let path = "/orders/{order_id}/claims/{claim_id}/reject";
        self.unary(Method::POST, path, request, |a| one("claim", a))
            .await
    }

    async fn get_ledger(
        &self,
        request: Request<GetLedgerRequest>,
    ) -> Result<Response<GetLedgerResponse>, Status> {
        let path = "/orders/{order_id}/ledger";
        self.unary(Method::GET, path, request, |a| json!({ "ledger": a.body }))
            .await
    }

    async fn list_returns(
        &self,
        request: Request<ListReturnsRequest>,
    ) -> Result<Response<ListReturnsResponse>, Status> {
        let path = "/orders/{order_id}/returns";
        self.unary(Method::GET, path, request, |a| {
            let returns = a.body["returns"].as_array().cloned().unwrap_or_default();
            json!({ "returns": returns.into_iter().map(order_return).collect::<Vec<_>>() })
        })
        .await
    }

    async fn refund_items(
        &self,
        request: Request<RefundItemsRequest>,
    ) -> Result<Response<RefundItemsResponse>, Status> {
        let call = call(Method::POST, "/orders/{id}/refund-items", &request)?;
        let history_uri = call.uri.replace("/refund-items", "/edit-history");
        let answer = self.rest(call).await?;
        // The version this refund produced; a repeated request's stored answer
        // is the order as the refund left it.
        let version = answer.produced.or(answer.body["version"].as_i64());
        let refunded = match (answer.accepted(), version) {
            (false, Some(version)) => {
                let history = self.get(history_uri, &request).await?;
                refunded_at(&history.body, version)
            }
            _ => None,
        };
        let accepted = answer.accepted();
        Ok(Response::new(from_json(json!({
            "order": answer.body,
            "refunded_amount": refunded,
            "accepted": accepted,
        }))?))
    }

    async fn get_status_history(
        &self,
        request: Request<GetStatusHistoryRequest>,
    ) -> Result<Response<GetStatusHistoryResponse>, Status> {
        let path = "/orders/{id}/status-history";
        self.unary(Method::GET, path, request, |a| json!({ "entries": a.body }))
            .await
    }

    async fn get_edit_history(
        &self,
        request: Request<GetEditHistoryRequest>,
    ) -> Result<Response<GetEditHistoryResponse>, Status> {
        let path = "/orders/{id}/edit-history";
        self.unary(Method::GET, path, request, |a| json!({ "entries": a.body }))
            .await
    }

    async fn get_analytics(
        &self,
        request: Request<GetAnalyticsRequest>,
    ) -> Result<Response<GetAnalyticsResponse>, Status> {
        let path = "/orders/analytics";
        self.unary(Method::GET, path, request, |a| analytics(a.body))
            .await
    }
}
