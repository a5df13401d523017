//! The `order-stack` binary's commands. (Being an integration test, this also has
//! cargo build the binary for `cargo test --workspace`: the service's end-to-end
//! tests run its `dev` and `cluster`.)

use std::process::Command;

#[test]
fn an_unknown_command_prints_the_usage_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_order-stack"))
        .arg("frobnicate")
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for command in ["dev", "cluster", "sim", "serve"] {
        assert!(stderr.contains(&format!("  {command} ")), "{stderr}");
    }
}
