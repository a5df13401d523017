//! The operator console in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`) driven over WebDriver. Screenshots are kept under the
//! test target's tmp folder (`console/`).

use crate::helpers::{OrderLedger, TestApp};
use crate::operators::{entry, order_stuck_on_payment, wait_for_stuck};
use fantoccini::{Client, ClientBuilder, Locator};
use order_stack::process::free_port;
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A headless Chromium under its own chromedriver, gone when dropped.
struct Browser {
    client: Client,
    _driver: Child,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port().unwrap();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{driver_bin} does not start ({e}): install chromium and chromium-driver")
            });
        let profile = std::env::temp_dir().join(format!("order-console-{}", uuid::Uuid::new_v4()));
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver gave no session: {e}"),
            }
        };
        Browser {
            client,
            _driver: driver,
            profile,
        }
    }

    /// Keeps a screenshot of the page as `name` and returns where.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    /// The text of the first element at `css`, once it shows `wanted`.
    async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let start = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(wanted) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{css} never showed {wanted:?}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until nothing matches `css`.
    async fn wait_for_none(&self, css: &str) {
        let start = Instant::now();
        while !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{css} is still there"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.profile).ok();
    }
}

#[tokio::test]
async fn an_operator_sees_the_stuck_payment_in_the_console_and_retries_it_with_one_click() {
    let app = TestApp::spawn().await;
    let id = order_stuck_on_payment(&app).await;
    let list = wait_for_stuck(&app, "", |l| entry(l, &id).is_some()).await;
    let number = entry(&list, &id).unwrap()["order_number"]
        .as_str()
        .unwrap()
        .to_owned();

    let browser = Browser::start().await;
    let root = app.api.trim_end_matches("/api/v1");
    browser.client.goto(&format!("{root}/ops")).await.unwrap();
    let row = format!("#stuck-table tr[data-order-id='{id}']");
    let shown = browser.wait_for_text(&row, "charge_payment").await;
    assert!(shown.contains(&number), "{shown}");
    let link = browser
        .client
        .find(Locator::Css(&format!("{row} a")))
        .await
        .unwrap();
    let href = link.attr("href").await.unwrap().unwrap_or_default();
    assert!(href.ends_with(&format!("#{number}")), "{href}");
    assert!(
        shown.contains("503"),
        "the downstream's answer is shown: {shown}"
    );

    // The order's timeline, opened by its number.
    let search = browser
        .client
        .find(Locator::Id("search-input"))
        .await
        .unwrap();
    search.send_keys(&number).await.unwrap();
    browser
        .client
        .find(Locator::Css("#search button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = browser.wait_for_text("#timeline", "charge_payment").await;
    assert!(timeline.contains(&number), "{timeline}");
    assert!(
        timeline.contains("failed"),
        "the failing attempt: {timeline}"
    );
    let retry = browser.client.find(Locator::Id("tl-retry")).await.unwrap();
    assert!(retry.is_displayed().await.unwrap(), "a retry is offered");
    browser.screenshot("console-stuck.png").await;

    // One click retries the invocation at once. It is clicked while the payment
    // service still fails: once it is back, Restate's own next attempt may
    // confirm the order before a slow browser clicks, and there is then nothing
    // left to retry.
    let button = format!("{row} button.retry");
    browser
        .client
        .find(Locator::Css(&button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let message = browser.wait_for_text("#message", "Retried").await;
    assert!(message.contains(&id), "{message}");
    app.sim.sim.clear_faults();

    let order = app
        .wait_for(&id, Duration::from_secs(20), |o| o["status"] == "confirmed")
        .await;
    assert_eq!(order["captured_amount"], "103.10");
    browser.wait_for_none(&row).await;
    let timeline = browser.wait_for_text("#timeline", "confirmed").await;
    assert!(timeline.contains("succeeded"), "{timeline}");
    browser.screenshot("console-retried.png").await;

    let ledger = app.settled_ledger().await;
    assert_eq!(
        OrderLedger::of(&ledger, &id).captures.len(),
        1,
        "one capture"
    );
    let (_, list) = app.get("/ops/orders/stuck").await;
    assert!(entry(&list, &id).is_none(), "{list}");
    browser.client.clone().close().await.ok();
}

#[tokio::test]
async fn the_console_says_when_nothing_is_stuck_and_opens_an_order_from_a_link_with_its_number() {
    // Arrange: a confirmed order, nothing stuck.
    let app = TestApp::spawn().await;
    let (status, order) = app
        .create(&crate::helpers::mug_order(Some("pm_card_visa")))
        .await;
    assert_eq!(status, 201, "{order}");
    let number = order["order_number"].as_str().unwrap();

    // Act: open the console at the order's number.
    let browser = Browser::start().await;
    let root = app.api.trim_end_matches("/api/v1");
    browser
        .client
        .goto(&format!("{root}/ops#{number}"))
        .await
        .unwrap();

    // Assert: the empty list says so; the timeline shows the order with its money
    // and its times in UTC, and offers neither a retry nor a resolution.
    browser
        .wait_for_text("#stuck-table", "Nothing is stuck")
        .await;
    let timeline = browser.wait_for_text("#timeline", number).await;
    let money = browser.wait_for_text("#tl-money", "Total 103.10 USD").await;
    assert!(money.contains("captured 103.10 USD"), "{money}");
    assert!(
        timeline.contains(" UTC"),
        "times with their zone: {timeline}"
    );
    for id in ["tl-retry", "tl-resolve"] {
        let button = browser.client.find(Locator::Id(id)).await.unwrap();
        assert!(!button.is_displayed().await.unwrap(), "{id} is offered");
    }
    browser.screenshot("console-nothing-stuck.png").await;
    browser.client.clone().close().await.ok();
}
