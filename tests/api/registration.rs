//! Registration of the deployment with a real restate-server: without force, a
//! restart on the same handlers is accepted, and changed handlers stop the start at
//! once, whether at the same URL (which Restate would keep unchanged) or at a new one
//! (which Restate refuses when it breaks the registered handlers, such as a
//! changed service type).

use order_service::engine::admin::{served_handlers, Admin};
use order_service::engine::endpoint;
use order_stack::process::free_port;
use order_stack::restate_server::RestateServer;
use restate_sdk::prelude::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The handlers a deployment had before.
struct FirstShape;

#[restate_sdk::service]
impl FirstShape {
    #[handler]
    async fn hello(&self, _ctx: Context<'_>) -> HandlerResult<()> {
        Ok(())
    }
}

/// Other handlers, served later at the same URL.
struct SecondShape;

#[restate_sdk::service]
impl SecondShape {
    #[handler]
    async fn hello(&self, _ctx: Context<'_>) -> HandlerResult<()> {
        Ok(())
    }
}

/// A service of two handlers.
struct ShapeV1;

#[restate_sdk::service(name = "Shape")]
impl ShapeV1 {
    #[handler]
    async fn hello(&self, _ctx: Context<'_>) -> HandlerResult<()> {
        Ok(())
    }

    #[handler]
    async fn bye(&self, _ctx: Context<'_>) -> HandlerResult<()> {
        Ok(())
    }
}

/// The same name as a virtual object: a breaking change of the service type.
struct ShapeV2;

#[restate_sdk::object(name = "Shape")]
impl ShapeV2 {
    #[handler]
    async fn hello(&self, _ctx: ObjectContext<'_>) -> HandlerResult<()> {
        Ok(())
    }
}

/// A fresh restate-server in a folder of its own.
async fn fresh_restate() -> (RestateServer, Admin, PathBuf) {
    let dir = std::env::temp_dir().join(format!("order-reg-{}", uuid::Uuid::new_v4().simple()));
    let settings = crate::helpers::restate_settings(&dir);
    let restate = RestateServer::start(&settings).await.unwrap();
    let admin = Admin::new(&[&restate.admin_url]);
    (restate, admin, dir)
}

/// Serves `endpoint` on `port` until the returned sender is dropped.
async fn serve_on(port: u16, endpoint: Endpoint) -> oneshot::Sender<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(endpoint::serve(listener, endpoint, async move {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test]
async fn register_without_force_fails_at_once_when_handlers_changed_at_the_same_url() {
    let (restate, admin, dir) = fresh_restate().await;
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let limit = Duration::from_secs(30);

    // The first deployment at this URL, registered again unchanged (a restart).
    let first = serve_on(port, Endpoint::builder().bind(FirstShape).build()).await;
    admin
        .register_deployment(&url, &served_handlers(&url).await.unwrap(), false, limit)
        .await
        .unwrap();
    admin
        .register_deployment(&url, &served_handlers(&url).await.unwrap(), false, limit)
        .await
        .unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Other handlers at the same URL.
    let _second = serve_on(port, Endpoint::builder().bind(SecondShape).build()).await;
    let start = Instant::now();
    let refused = admin
        .register_deployment(&url, &served_handlers(&url).await.unwrap(), false, limit)
        .await;
    let took = start.elapsed();
    let forced = admin
        .register_deployment(&url, &served_handlers(&url).await.unwrap(), true, limit)
        .await;

    let error = format!("{:#}", refused.expect_err("changed handlers were accepted"));
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
    assert!(error.contains("ORDER_RESTATE_FORCE_REGISTER"), "{error}");
    assert!(error.contains(&url), "{error}");
    forced.expect("force overwrites the deployment");
    assert!(admin.has_deployment(&url).await.unwrap());
    restate.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn register_without_force_fails_at_once_when_a_new_url_breaks_the_handlers() {
    let (restate, admin, dir) = fresh_restate().await;
    let limit = Duration::from_secs(30);
    let (old_port, new_port) = (free_port().unwrap(), free_port().unwrap());
    let old_url = format!("http://127.0.0.1:{old_port}");
    let new_url = format!("http://127.0.0.1:{new_port}");
    let _old = serve_on(old_port, Endpoint::builder().bind(ShapeV1).build()).await;
    let _new = serve_on(new_port, Endpoint::builder().bind(ShapeV2).build()).await;
    admin
        .register_deployment(
            &old_url,
            &served_handlers(&old_url).await.unwrap(),
            false,
            limit,
        )
        .await
        .unwrap();

    let start = Instant::now();
    let refused = admin
        .register_deployment(
            &new_url,
            &served_handlers(&new_url).await.unwrap(),
            false,
            limit,
        )
        .await;
    let took = start.elapsed();

    let error = format!(
        "{:#}",
        refused.expect_err("a changed service type was accepted")
    );
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
    assert!(error.contains("409"), "{error}");
    assert!(error.contains("ORDER_RESTATE_FORCE_REGISTER"), "{error}");
    restate.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_endpoint_that_requires_restate_identity_refuses_unsigned_calls() {
    let mut app = crate::helpers::TestApp::spawn().await;
    app.kill_service().await;
    // The test's restate-server signs with its own key: with another key required,
    // its discovery call to the endpoint is refused, and the start fails at once
    // saying why.
    let key = "publickeyv1_ChjENKeMvCtRnqG2mrBK1HmPKufgFUc98K8B3ononQvp";

    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
            .arg("serve")
            .envs(app.service_env())
            .env("ORDER_RESTATE_IDENTITY_KEYS", key)
            .env("ORDER_RESTATE_FORCE_REGISTER", "true")
            .env("RUST_LOG", "error")
            .output(),
    )
    .await
    .expect("the start ends at once")
    .unwrap();

    assert!(!out.status.success(), "started without Restate's identity");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ORDER_RESTATE_IDENTITY_KEYS"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
}
