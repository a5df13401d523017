//! The load: each order lives one life the seed picks (paid or draft, declined or
//! out of stock, moved along, cancelled whole or in part, returned and received,
//! rejected or left to expire, refunded), through the REST API. Every request
//! carries an `Idempotency-Key` and is sent again with it until it gets a final
//! answer, as a careful client does; what each accepted request should have done
//! is written down to check afterwards.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a client keeps sending one request before it gives up.
const PATIENCE: Duration = Duration::from_secs(180);

/// Counts over the whole run.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: AtomicU64,
    /// Requests sent again: no answer, `202`, `503`.
    pub resent: AtomicU64,
    /// `500` answers: a defect whatever the input.
    pub server_errors: AtomicU64,
    /// Requests that never got a final answer.
    pub unfinished: AtomicU64,
    /// Refusals no flow expects (a `409` on a move the order allows, say).
    pub unexpected_refusals: AtomicU64,
}

/// What an order should look like once everything settled.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub life: &'static str,
    pub order_id: Option<Uuid>,
    pub status: &'static str,
    /// Units cancelled and refunded without a return, per item (ids 1 and 2).
    pub cancelled: [i64; 2],
    /// Cancelled whole: every unit is cancelled.
    pub cancelled_whole: bool,
    pub refunded: [i64; 2],
    /// Each return and the status it should end in.
    pub returns: Vec<(Uuid, &'static str)>,
    /// The quantity of each item a change set, when one did.
    pub quantity: [Option<i64>; 2],
    /// Accepted requests.
    pub accepted: u32,
    /// Each exchange and claim and the status it should end in.
    pub exchanges: Vec<(Uuid, &'static str)>,
    pub claims: Vec<(Uuid, &'static str)>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Each replica's API; a request that gets no answer tries the next.
    apis: Vec<String>,
    seed: u64,
    pub tally: Arc<Tally>,
}

/// A final answer.
struct Answer {
    status: u16,
    body: Value,
}

impl Client {
    pub fn new(apis: &[String], seed: u64) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
            apis: apis.to_vec(),
            seed,
            tally: Arc::default(),
        }
    }

    /// Sends until the answer is final: anything but no answer, `202` or `503`.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        key: &str,
    ) -> Option<Answer> {
        self.send_if_match(method, path, body, key, None).await
    }

    /// [`Client::send`], with `If-Match: "<version>"` when given.
    async fn send_if_match(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        key: &str,
        version: Option<i64>,
    ) -> Option<Answer> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        // Requests take the replicas in turn, by their number; one that gets no
        // answer moves to the next.
        let mut api = self.tally.requests.fetch_add(1, Ordering::Relaxed) as usize;
        loop {
            let base = &self.apis[api % self.apis.len()];
            let mut request = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .header("idempotency-key", key)
                .json(body);
            if let Some(version) = version {
                request = request.header("if-match", format!("\"{version}\""));
            }
            let sent = request.send().await;
            if sent.is_err() {
                api += 1;
            }
            if let Ok(response) = sent {
                let status = response.status().as_u16();
                let body = response.json().await.unwrap_or(Value::Null);
                match status {
                    202 | 503 => {}
                    500 => {
                        self.tally.server_errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("500 on {method} {path}: {body}");
                    }
                    _ => return Some(Answer { status, body }),
                }
            }
            if started.elapsed() > PATIENCE {
                self.tally.unfinished.fetch_add(1, Ordering::Relaxed);
                eprintln!("no final answer to {method} {path} in {PATIENCE:?}");
                return None;
            }
            self.tally.resent.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    fn refused(&self, what: &str, answer: &Answer) {
        self.tally
            .unexpected_refusals
            .fetch_add(1, Ordering::Relaxed);
        eprintln!("unexpected {} on {what}: {}", answer.status, answer.body);
    }

    /// Order `n`'s life, as the seed picks it.
    pub async fn life(&self, n: u64) -> Expected {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n);
        let key = |step: &str| format!("chaos-{}-{n}-{step}", self.seed);
        let roll: f64 = rng.random();
        let (life, method, sku) = match roll {
            r if r < 0.05 => ("out_of_stock", Some("pm_card_visa"), "OOS-MUG"),
            r if r < 0.10 => ("declined", Some("pm_card_declined"), "SKU-MUG"),
            r if r < 0.18 => ("draft_expires", None, "SKU-MUG"),
            r if r < 0.30 => ("draft_paid", None, "SKU-MUG"),
            _ => ("paid", Some("pm_card_visa"), "SKU-MUG"),
        };
        let mut expect = Expected {
            life,
            ..Expected::default()
        };
        let body = order_body(&mut rng, sku, method);
        let Some(created) = self
            .send(reqwest::Method::POST, "/orders", &body, &key("create"))
            .await
        else {
            return expect;
        };
        if created.status != 201 {
            self.refused("create", &created);
            return expect;
        }
        expect.accepted += 1;
        let id: Uuid = match created.body["id"].as_str().and_then(|s| s.parse().ok()) {
            Some(id) => id,
            None => return expect,
        };
        expect.order_id = Some(id);
        expect.status = match life {
            "out_of_stock" | "declined" => "failed",
            "draft_expires" => "cancelled",
            "draft_paid" => "draft",
            _ => "confirmed",
        };
        if matches!(life, "out_of_stock" | "declined" | "draft_expires") {
            return expect;
        }
        let path = |tail: &str| format!("/orders/{id}{tail}");
        let mut version = created.body["version"].as_i64();
        if life == "draft_paid" {
            // Sometimes the first card is declined: the draft stays and is paid again.
            if rng.random_bool(0.3) {
                let declined = json!({ "method": "pm_card_declined" });
                match self
                    .send(
                        reqwest::Method::POST,
                        &path("/payments"),
                        &declined,
                        &key("pay-declined"),
                    )
                    .await
                {
                    Some(a) if a.status == 402 => {}
                    Some(a) => self.refused("a declined payment", &a),
                    None => return expect,
                }
            }
            let pay = json!({ "method": "pm_card_visa" });
            match self
                .send(reqwest::Method::POST, &path("/payments"), &pay, &key("pay"))
                .await
            {
                Some(a) if a.status == 200 => {
                    expect.accepted += 1;
                    expect.status = "confirmed";
                    version = a.body["version"].as_i64();
                }
                Some(a) => {
                    self.refused("pay", &a);
                    return expect;
                }
                None => return expect,
            }
        }

        // Sometimes the customer calls: one plate more or less, applied at once
        // with the version the order is at; half the time a plate more waits for
        // the customer to pay it.
        if rng.random_bool(0.25) {
            let plates = match rng.random_bool(0.5) {
                true => 3,
                false => 1,
            };
            let mut change =
                json!({"operations": [{"op": "set_quantity", "item_id": 2, "quantity": plates}]});
            let waits = rng.random_bool(0.5);
            if waits {
                // A deadline short enough that its timer fires before the run settles
                // (and finds the change paid).
                change["collect"] = json!("await_customer");
                change["payment_deadline_seconds"] = json!(20);
            }
            match self
                .send_if_match(
                    reqwest::Method::POST,
                    &path("/changes"),
                    &change,
                    &key("change"),
                    version,
                )
                .await
            {
                Some(a) if a.status == 201 && a.body["status"] == "applied" => {
                    expect.accepted += 1;
                    expect.quantity[1] = Some(plates);
                }
                Some(a) if waits && a.status == 201 && a.body["status"] == "awaiting_payment" => {
                    expect.accepted += 1;
                    let change_id = a.body["change_id"].as_str().unwrap_or_default();
                    let pay = json!({ "method": "pm_card_visa" });
                    let paid = self
                        .send(
                            reqwest::Method::POST,
                            &path(&format!("/changes/{change_id}/payments")),
                            &pay,
                            &key("change-pay"),
                        )
                        .await;
                    match paid {
                        Some(p) if p.status == 200 && p.body["status"] == "applied" => {
                            expect.accepted += 1;
                            expect.quantity[1] = Some(plates);
                        }
                        Some(p) => {
                            self.refused("a change's payment", &p);
                            return expect;
                        }
                        None => return expect,
                    }
                }
                Some(a) => {
                    self.refused("a change", &a);
                    return expect;
                }
                None => return expect,
            }
        }

        let next: f64 = rng.random();
        if next < 0.15 {
            if self
                .command(
                    &mut expect,
                    &path("/cancel"),
                    json!({"reason": "chaos"}),
                    &key("cancel"),
                )
                .await
            {
                expect.status = "cancelled";
                expect.cancelled_whole = true;
            }
            return expect;
        }
        if next < 0.35 {
            let units = json!({"items": [{"item_id": 1, "quantity": 1}], "reason": "chaos"});
            if self
                .command(
                    &mut expect,
                    &path("/cancel-items"),
                    units,
                    &key("cancel-items"),
                )
                .await
            {
                expect.cancelled[0] += 1;
            }
            if rng.random_bool(0.5) {
                return expect;
            }
        }
        for to in ["processing", "shipped", "delivered"] {
            let moved = json!({ "status": to });
            if !self
                .command(&mut expect, &path("/status"), moved, &key(to))
                .await
            {
                return expect;
            }
            expect.status = to;
        }
        let after: f64 = rng.random();
        if after < 0.6 {
            let ends = match after {
                a if a < 0.3 => "refunded",
                a if a < 0.45 => "rejected",
                _ => "expired",
            };
            let items = json!({"items": [{"item_id": 1, "quantity": 1, "reason": "chaos"}]});
            let requested = match self
                .send(
                    reqwest::Method::POST,
                    &path("/returns"),
                    &items,
                    &key("return"),
                )
                .await
            {
                Some(a) if a.status == 201 => a,
                Some(a) => {
                    self.refused("a return", &a);
                    return expect;
                }
                None => return expect,
            };
            expect.accepted += 1;
            let Some(return_id) = requested.body["return_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
            else {
                return expect;
            };
            expect.returns.push((return_id, "requested"));
            let command = match ends {
                "refunded" => Some("receive"),
                "rejected" => Some("reject"),
                _ => None,
            };
            let done = match command {
                Some(command) => {
                    let tail = format!("/returns/{return_id}/{command}");
                    self.command(&mut expect, &path(&tail), json!({}), &key(command))
                        .await
                }
                None => true,
            };
            if done {
                expect.returns[0].1 = ends;
            }
        } else if after < 0.7 {
            self.exchange(&mut rng, &mut expect, id, &key).await;
        } else if after < 0.8 {
            self.claim(&mut rng, &mut expect, id, &key).await;
        } else if after < 0.9 {
            let units = json!({"items": [{"item_id": 2, "quantity": 1}], "reason": "chaos"});
            if self
                .command(
                    &mut expect,
                    &path("/refund-items"),
                    units,
                    &key("refund-items"),
                )
                .await
            {
                expect.refunded[1] += 1;
            }
        }
        expect
    }

    /// A delivered order's first item exchanged, one unit, for a mug dearer,
    /// cheaper or of the same price, then received: settled by one net movement.
    async fn exchange(
        &self,
        rng: &mut StdRng,
        expect: &mut Expected,
        id: Uuid,
        key: &(dyn Fn(&str) -> String + Sync),
    ) {
        let price = ["4.00", "9.95", "25.00"][rng.random_range(0..3)];
        let body = json!({
            "return_items": [{"item_id": 1, "quantity": 1, "reason": "chaos"}],
            "new_items": [{"product_id": Uuid::new_v4(), "product_sku": "SKU-MUG-L",
                "product_name": "Mug, large", "warehouse_id": Uuid::new_v4(),
                "quantity": 1, "unit_price": price}],
        });
        let path = format!("/orders/{id}/exchanges");
        let made = match self
            .send(reqwest::Method::POST, &path, &body, &key("exchange"))
            .await
        {
            Some(a) if a.status == 201 => a,
            Some(a) => return self.refused("an exchange", &a),
            None => return,
        };
        expect.accepted += 1;
        let Some(exchange_id) = made.body["exchange_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
        else {
            return;
        };
        expect.exchanges.push((exchange_id, "requested"));
        let receive = format!("{path}/{exchange_id}/receive");
        if self
            .command(expect, &receive, json!({}), &key("exchange-receive"))
            .await
        {
            expect.exchanges[0].1 = "settled";
        }
    }

    /// A claim of one damaged unit of the second item, resolved by a refund, a
    /// replacement or both.
    async fn claim(
        &self,
        rng: &mut StdRng,
        expect: &mut Expected,
        id: Uuid,
        key: &(dyn Fn(&str) -> String + Sync),
    ) {
        let resolution =
            ["refund", "replacement", "refund_and_replacement"][rng.random_range(0..3)];
        let body = json!({"items": [{"item_id": 2, "quantity": 1, "claim_type": "damaged"}]});
        let path = format!("/orders/{id}/claims");
        let made = match self
            .send(reqwest::Method::POST, &path, &body, &key("claim"))
            .await
        {
            Some(a) if a.status == 201 => a,
            Some(a) => return self.refused("a claim", &a),
            None => return,
        };
        expect.accepted += 1;
        let Some(claim_id) = made.body["claim_id"].as_str().and_then(|s| s.parse().ok()) else {
            return;
        };
        expect.claims.push((claim_id, "open"));
        let resolve = format!("{path}/{claim_id}/resolve");
        let body = json!({ "resolution": resolution });
        if self
            .command(expect, &resolve, body, &key("claim-resolve"))
            .await
        {
            expect.claims[0].1 = "resolved";
            if resolution != "replacement" {
                expect.refunded[1] += 1;
            }
        }
    }

    /// A command the order allows: `true` once it was applied (`200`).
    async fn command(&self, expect: &mut Expected, path: &str, body: Value, key: &str) -> bool {
        let method = match path.ends_with("/status") {
            true => reqwest::Method::PUT,
            false => reqwest::Method::POST,
        };
        match self.send(method, path, &body, key).await {
            Some(a) if a.status == 200 => {
                expect.accepted += 1;
                true
            }
            Some(a) => {
                self.refused(path, &a);
                false
            }
            None => false,
        }
    }
}

/// Two lines, two or three units each, with discounts and taxes that do not divide
/// evenly, so that partial give-backs are prorated.
fn order_body(rng: &mut StdRng, sku: &str, method: Option<&str>) -> Value {
    let line = |sku: String, quantity: i64, price: &str, discount: &str, tax: &str| {
        json!({
            "product_id": Uuid::new_v4(), "product_sku": sku, "product_name": "Chaos mug",
            "warehouse_id": "6f1c1a54-0000-4000-8000-000000000001", "quantity": quantity,
            "unit_price": price, "discount_amount": discount, "tax_amount": tax,
        })
    };
    let mut body = json!({
        "customer_id": Uuid::new_v4(),
        "currency": "USD",
        "items": [
            line(sku.to_owned(), rng.random_range(2..=3), "10.00", "1.00", "0.83"),
            line(format!("SKU-PLATE-{}", rng.random_range(1..=5)), 2, "24.99", "0.00", "2.07"),
        ],
        "shipping_amount": "4.95",
        "shipping_address": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
    });
    if let Some(method) = method {
        body["payment"] = json!({ "method": method });
    }
    body
}
