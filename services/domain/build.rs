//! Compiles `proto/` with protox (a protobuf compiler in pure Rust), so that
//! building never needs a system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "rill/v1/chat.proto",
        "rill/v1/directory.proto",
        "rill/v1/push.proto",
        "rill/v1/presence.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
