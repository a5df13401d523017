//! Resource limits of the REST server: a client that sends nothing, trickles its
//! headers or trickles its body is cut off in time, and connections are capped.

use crate::helpers::{Options, TestApp};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn with_env(env: Vec<(&'static str, String)>) -> TestApp {
    TestApp::spawn_with(Options {
        env,
        ..Default::default()
    })
    .await
}

/// `host:port` of the REST server.
fn address(app: &TestApp) -> String {
    app.api
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_owned()
}

/// Sends `bytes` one at a time every `every`, until the server closes the
/// connection or `give_up` passes; answers what the server sent and when it closed.
async fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    every: Duration,
    give_up: Duration,
) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut sent = 0;
    while start.elapsed() < give_up {
        if sent < bytes.len() && stream.write_all(&bytes[sent..=sent]).await.is_err() {
            return (
                String::from_utf8_lossy(&received).into(),
                Some(start.elapsed()),
            );
        }
        sent += 1;
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(every, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into(),
                    Some(start.elapsed()),
                )
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&received).into(), None)
}

#[tokio::test]
async fn a_client_that_sends_nothing_or_trickles_its_headers_is_cut_off() {
    let app = with_env(vec![("ORDER_HTTP_HEADER_TIMEOUT_SECS", "2".into())]).await;
    let addr = address(&app);

    // Headers that would never end, one byte every 200 ms.
    let endless: Vec<u8> = b"GET /api/v1/orders/health HTTP/1.1\r\nHost: x\r\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', 1000))
        .collect();
    let mut trickling = TcpStream::connect(&addr).await.unwrap();
    let (_, closed) = trickle(
        &mut trickling,
        &endless,
        Duration::from_millis(200),
        Duration::from_secs(15),
    )
    .await;
    let closed = closed.expect("a trickling client is cut off");
    assert!(closed < Duration::from_secs(5), "cut off after {closed:?}");

    // A connection that sends nothing at all.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let (_, closed) = trickle(
        &mut silent,
        b"",
        Duration::from_millis(200),
        Duration::from_secs(15),
    )
    .await;
    let closed = closed.expect("a silent client is cut off");
    assert!(closed < Duration::from_secs(5), "cut off after {closed:?}");

    // Whoever sends its headers in time is served as before.
    let (status, _) = app.get("/orders/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_in_time() {
    let app = with_env(vec![("ORDER_REQUEST_TIMEOUT_SECS", "4".into())]).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 5000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();

    let body = vec![b' '; 5000];
    let (answer, _) = trickle(
        &mut stream,
        &body,
        Duration::from_millis(250),
        Duration::from_secs(20),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_place() {
    let app = with_env(vec![
        ("ORDER_MAX_CONNECTIONS", "2".into()),
        ("ORDER_HTTP_HEADER_TIMEOUT_SECS", "30".into()),
    ])
    .await;
    let url = format!("{}/orders/health", app.api);
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    assert_eq!(fresh().get(&url).send().await.unwrap().status(), 200);

    // Two clients take both places and say nothing.
    let addr = address(&app);
    let held = [
        TcpStream::connect(&addr).await.unwrap(),
        TcpStream::connect(&addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = fresh().get(&url).send().await.unwrap_err();
    assert!(e.is_timeout(), "a third connection is not served: {e}");

    // Once one goes, the next is served.
    drop(held);
    let started = Instant::now();
    assert_eq!(fresh().get(&url).send().await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
}
