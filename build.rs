//! Compiles the etcd v3 wire API and Cairn's peer protocol from `proto/` with a pure-Rust
//! protobuf parser (protox), so a machine with only the Rust toolchain can build Cairn: no
//! `protoc` binary is looked for or needed.

use std::path::PathBuf;
use std::process::Command;

/// Every .proto that the server and CLI compile, relative to `proto/`.
const PROTO_FILES: &[&str] = &[
    "etcd/mvccpb/kv.proto",
    "etcd/authpb/auth.proto",
    "etcd/etcdserverpb/rpc.proto",
    "etcd/v3lockpb/v3lock.proto",
    "etcd/v3electionpb/v3election.proto",
    "cairn/peer/v1/peer.proto",
    "cairn/entry/v1/request.proto",
    "cairn/lease/v1/lease.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    emit_git_commit();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTO_FILES, ["proto"])?;

    // The wire tests read the descriptor set back to check method paths and field numbers.
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("cairn_descriptor.bin"), encoded)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Services Cairn does not serve yet answer UNIMPLEMENTED method by method.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// Makes the commit a binary was built from visible to `--version`. A source tarball without
/// `.git` builds too; it just says "unknown".
fn emit_git_commit() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CAIRN_GIT_COMMIT={commit}");
}
