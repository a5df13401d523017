//! The running service against its own OpenAPI document, with schemathesis: no
//! `5xx`, every answer as the document says (status, content type, schema,
//! headers), every request the document allows taken and every other one refused,
//! authorization enforced where the document asks for it, and every refused
//! request (`4xx`) leaving the read model as it was (tests/schemathesis/hooks.py).
//!
//! schemathesis comes from PyPI into `.venv` (`make setup`); `SCHEMATHESIS` names
//! another `st` executable.

use crate::helpers::{mug_order, Options, TestApp};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

const SECRET: &str = "the schemathesis run's secret, 32 bytes or more";

/// Fixed, so that a failure can be run again as it was.
const SEED: &str = "20261205";
/// Test cases per operation and phase: enough to reach every documented answer,
/// few enough for a couple of minutes on two cores.
const MAX_EXAMPLES: &str = "40";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `st` executable that `make setup` installs.
fn schemathesis() -> PathBuf {
    let st = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv/bin/st"));
    assert!(
        st.is_file(),
        "schemathesis is not installed ({} is missing): run `make setup`",
        st.display()
    );
    st
}

/// The subject of the token schemathesis calls with.
const SUBJECT: &str = "schemathesis";

/// A token that may do everything: the operator's role.
fn operator_token() -> String {
    let claims = json!({
        "sub": SUBJECT,
        "roles": ["operator"],
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

/// A confirmed order, a draft and a delivered order with a requested return, for
/// the generated requests to name besides random ids.
async fn seed(app: &TestApp, token: &str) -> Value {
    let (status, confirmed, _) = app
        .as_caller(token)
        .post("/orders", &mug_order(Some("pm_card_visa")), None)
        .await;
    assert_eq!(status, 201, "{confirmed}");
    let (status, draft, _) = app
        .as_caller(token)
        .post("/orders", &mug_order(None), None)
        .await;
    assert_eq!(
        (status, draft["status"].as_str()),
        (201, Some("draft")),
        "{draft}"
    );
    let (status, delivered, _) = app
        .as_caller(token)
        .post("/orders", &mug_order(Some("pm_card_visa")), None)
        .await;
    assert_eq!(status, 201, "{delivered}");
    let id = delivered["id"].as_str().unwrap();
    for to in ["processing", "shipped", "delivered"] {
        let path = format!("/orders/{id}/status");
        let (status, moved, _) = app
            .as_caller(token)
            .put(&path, &json!({ "status": to }), None)
            .await;
        assert_eq!(status, 200, "{moved}");
    }
    let body = json!({"items": [{"item_id": 1, "quantity": 1, "reason": "chipped"}]});
    let (status, ret, _) = app
        .as_caller(token)
        .post(&format!("/orders/{id}/returns"), &body, None)
        .await;
    assert_eq!(status, 201, "{ret}");

    let orders = [&confirmed, &draft, &delivered];
    json!({
        "orders": orders.iter().map(|o| &o["id"]).collect::<Vec<_>>(),
        "order_numbers": orders.iter().map(|o| &o["order_number"]).collect::<Vec<_>>(),
        "returns": [[id, ret["return_id"]]],
    })
}

#[tokio::test]
async fn the_service_keeps_to_its_openapi_document() {
    let st = schemathesis();
    // Authorization on, so that the document's `bearerAuth` is checked too.
    let app = TestApp::spawn_with(Options {
        env: vec![("ORDER_AUTH_JWT_SECRET", SECRET.into())],
        ..Default::default()
    })
    .await;
    let token = operator_token();
    let seeds = seed(&app, &token).await;
    let dsn = app
        .service_env()
        .into_iter()
        .find(|(k, _)| k == "ORDER_DATABASE_DSN")
        .map(|(_, v)| v)
        .unwrap();
    let root = app.api.trim_end_matches("/api/v1").to_owned();
    // Its working directory: nothing of the run lands in the repository.
    let work = std::env::temp_dir().join(format!("order-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();

    let started = Instant::now();
    let mut run = Command::new(&st);
    run.arg("run")
        .arg(format!("{root}/api/v1/openapi.json"))
        .args(["--url", &root])
        .args(["--checks", "all"])
        .args(["--workers", "1"])
        .args(["--seed", SEED])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--generation-database", "none"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--no-color")
        .env(
            "SCHEMATHESIS_HOOKS",
            manifest_dir().join("tests/schemathesis/hooks.py"),
        )
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ORDER_CHECK_DATABASE_URL", dsn)
        .env("ORDER_CHECK_SEEDS", seeds.to_string())
        .env("ORDER_CHECK_SUBJECT", SUBJECT)
        .current_dir(&work)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(900), run.output())
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis starts");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("{report}");
    eprintln!("schemathesis ran for {:?}", started.elapsed());
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); its report is above",
        output.status.code()
    );
}
