//! Compiles `proto/order/v1/order.proto` for the gRPC server (and the client the
//! tests use) with a pure-Rust protobuf compiler, and keeps its descriptors for
//! server reflection and for transcoding to the REST API.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["order/v1/order.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("order_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Type names let the transcoder find each message's descriptor.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure().compile_fds_with_config(descriptors, config)?;
    Ok(())
}
