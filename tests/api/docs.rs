//! The documentation, run: the README's quick start and every example of
//! `docs/guide.md`, each against a fresh `order-stack dev`, with every answer
//! checked against the answer the page shows, so the examples cannot drift.
//!
//! The pages follow one convention. A ```` ```sh ```` block that calls the service
//! at `http://127.0.0.1:8004` (the address of `make run`) holds one `curl` command
//! and is followed by an ```` ```http ```` block with its answer:
//!
//! - `HTTP/1.1 <status> <reason>`: the status, checked;
//! - optional `capture: NAME=.path` lines: the answer's value at `.path` (for
//!   example `.id` or `.items[1].id`) becomes the shell variable `$NAME` of the
//!   later examples;
//! - optional JSON: every field it shows must be in the answer with that value;
//!   an object's other fields are not checked, and an array must have as many
//!   elements as shown, each checked the same way. Ids and times are left out.
//!
//! The blocks run in the page's order with `sh -c`, the address replaced by the
//! test's own. A `curl` block at the service without an answer fails the test.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The address the pages use: what `make run` serves.
const DOCUMENTED: &str = "http://127.0.0.1:8004";

#[tokio::test]
async fn the_readme_quick_start_runs_as_written() {
    run_page("README.md").await;
}

#[tokio::test]
async fn every_example_of_the_guide_runs_as_written() {
    run_page("docs/guide.md").await;
}

/// One example: a shell block and the answer the page gives for it.
struct Example {
    line: usize,
    script: String,
    status: u16,
    captures: Vec<(String, String)>,
    body: Option<Value>,
}

async fn run_page(page: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
    let text = std::fs::read_to_string(&path).unwrap();
    let examples = examples(page, &text);
    assert!(!examples.is_empty(), "{page} has no example to run");
    let dev = Dev::start().await;
    let started = Instant::now();
    let mut vars: Vec<(String, String)> = Vec::new();
    for example in &examples {
        let (status, body) = dev.run(&example.script, &vars).await;
        let at = format!("{page}:{}", example.line);
        assert_eq!(
            status, example.status,
            "{at}: the answer's status\n{body}\n{}",
            example.script
        );
        if let Some(expected) = &example.body {
            if let Err(e) = contains(expected, &body, "") {
                panic!(
                    "{at}: the answer differs from the page at {e}\nanswer: {body}\n{}",
                    example.script
                );
            }
        }
        for (name, json_path) in &example.captures {
            let value = body.pointer(&pointer(json_path)).unwrap_or_else(|| {
                panic!("{at}: capture {name}={json_path}: not in the answer {body}")
            });
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            vars.retain(|(n, _)| n != name);
            vars.push((name.clone(), text));
        }
    }
    eprintln!(
        "{page}: {} examples in {:.1?}",
        examples.len(),
        started.elapsed()
    );
}

/// The page's fenced blocks, as (first line number, info string, content).
fn blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((n + 1, info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, _, content)), None) => {
                content.push_str(line);
                content.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The runnable examples of a page, in order.
fn examples(page: &str, text: &str) -> Vec<Example> {
    let blocks = blocks(text);
    let mut examples = Vec::new();
    for (i, (line, info, script)) in blocks.iter().enumerate() {
        let calls_service = info == "sh" && script.contains("curl") && script.contains(DOCUMENTED);
        if !calls_service {
            continue;
        }
        let answer = blocks.get(i + 1).filter(|(_, info, _)| info == "http");
        let Some((_, _, answer)) = answer else {
            panic!("{page}:{line}: an example without its answer (a ```http block after it)");
        };
        examples.push(expectation(page, *line, script, answer));
    }
    examples
}

/// Reads an ```http block: the status line, `capture:` lines, then JSON.
fn expectation(page: &str, line: usize, script: &str, answer: &str) -> Example {
    let mut lines = answer.lines();
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{page}:{line}: the answer starts with `HTTP/1.1 <status>`"));
    let mut captures = Vec::new();
    let mut json = String::new();
    for l in lines {
        match l.strip_prefix("capture: ").and_then(|c| c.split_once('=')) {
            Some((name, path)) => captures.push((name.trim().to_owned(), path.trim().to_owned())),
            None => {
                json.push_str(l);
                json.push('\n');
            }
        }
    }
    let body = (!json.trim().is_empty()).then(|| {
        serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{page}:{line}: the answer's JSON: {e}\n{json}"))
    });
    Example {
        line,
        script: script.to_owned(),
        status,
        captures,
        body,
    }
}

/// `.items[1].id` as the JSON pointer `/items/1/id`.
fn pointer(path: &str) -> String {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| format!("/{s}"))
        .collect()
}

/// Whether `actual` has everything `expected` shows; the error names the place.
fn contains(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want.iter().try_for_each(|(k, v)| {
            let at = format!("{at}.{k}");
            let got = got.get(k).ok_or_else(|| format!("{at}: missing"))?;
            contains(v, got, &at)
        }),
        (Value::Array(want), Value::Array(got)) if want.len() == got.len() => want
            .iter()
            .zip(got)
            .enumerate()
            .try_for_each(|(i, (w, g))| contains(w, g, &format!("{at}[{i}]"))),
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: expected {expected}, got {actual}")),
    }
}

/// `order-stack dev` on free ports with a data folder of its own.
struct Dev {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Dev {
    async fn start() -> Dev {
        let port = || order_stack::process::free_port().unwrap().to_string();
        let dir =
            std::env::temp_dir().join(format!("order-docs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let http = port();
        let mut cmd = Command::new(crate::helpers::order_stack_bin());
        cmd.arg("dev")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ORDER_DATA_DIR", dir.join("data"))
            .env("ORDER_HTTP_PORT", &http);
        for var in [
            "ORDER_GRPC_PORT",
            "ORDER_RESTATE_ENDPOINT_PORT",
            "ORDER_RESTATE_INGRESS_PORT",
            "ORDER_RESTATE_ADMIN_PORT",
            "ORDER_RESTATE_NODE_PORT",
            "ORDER_SIM_PORT",
        ] {
            cmd.env(var, port());
        }
        if let Some(bin) = std::env::var_os("RESTATE_SERVER_BIN") {
            cmd.env("RESTATE_SERVER_BIN", bin);
        }
        let log = std::fs::File::create(dir.join("dev.log")).unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
        let line = ready
            .ok()
            .and_then(|l| l.ok().flatten())
            .unwrap_or_default();
        let base = format!("http://127.0.0.1:{http}");
        let log = std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default();
        assert_eq!(line, format!("ready {base}"), "{log}");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Dev { child, dir, base }
    }

    /// Runs one example's `curl` with `sh -c`; the status and the JSON answer.
    async fn run(&self, script: &str, vars: &[(String, String)]) -> (u16, Value) {
        // The status goes on a line of its own after the body.
        let prelude = "curl() { command curl -w '\\n%{http_code}' \"$@\"; }\n";
        let script = format!("{prelude}{}", script.replace(DOCUMENTED, &self.base));
        let run = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the example answers in time")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, status) = stdout.trim_end().rsplit_once('\n').unwrap_or(("", &stdout));
        let status = status.trim().parse().unwrap_or_else(|_| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            panic!("no status from the example:\n{script}\n{stdout}\n{stderr}")
        });
        let body = match body.trim() {
            "" => Value::Null,
            text => serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())),
        };
        (status, body)
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::env::var_os("TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn the_convention_reads_blocks_captures_and_subsets() {
    let page = "```sh\ncurl -s http://127.0.0.1:8004/api/v1/orders\n```\n\n```http\nHTTP/1.1 201 Created\ncapture: ID=.items[0].id\n{\"a\": [{\"b\": 1}]}\n```\n";
    let examples = examples("page", page);
    assert_eq!(examples.len(), 1);
    assert_eq!(examples[0].status, 201);
    assert_eq!(examples[0].captures, [("ID".into(), ".items[0].id".into())]);
    assert_eq!(pointer(".items[0].id"), "/items/0/id");
    let want = examples[0].body.clone().unwrap();
    assert!(contains(
        &want,
        &serde_json::json!({"a": [{"b": 1, "c": 2}], "d": 3}),
        ""
    )
    .is_ok());
    assert!(contains(&want, &serde_json::json!({"a": [{"b": 2}]}), "").is_err());
    assert!(contains(&want, &serde_json::json!({"a": []}), "").is_err());
}
