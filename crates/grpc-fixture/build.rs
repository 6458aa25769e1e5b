//! Compiles proto/flaky.proto with a vendored protoc: nothing to install on a fresh machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/flaky.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto/flaky.proto");
    Ok(())
}
