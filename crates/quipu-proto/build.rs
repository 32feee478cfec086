//! Generates the gRPC code from `proto/` with protox, a protobuf compiler
//! written in Rust, so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where cargo runs this script from (read when it runs, not when it
    // was compiled: a build script compiled for one checkout may run for
    // another sharing the target directory).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or("cargo sets CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    let files = [
        root.join("quipu/v1/streams.proto"),
        root.join("quipu/v1/groups.proto"),
        root.join("quipu/v1/projections.proto"),
        root.join("quipu/v1/snapshots.proto"),
        root.join("quipu/v1/schemas.proto"),
        root.join("kurrent/streams.proto"),
        root.join("kurrent/persistent.proto"),
        root.join("kurrent/v2/streams.proto"),
        root.join("kurrent/v2/errors.proto"),
        root.join("kurrent/serverfeatures.proto"),
        root.join("kurrent/gossip.proto"),
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(&files, [&root])?;
    // Decode failures are INVALID_ARGUMENT, not prost's INTERNAL.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
