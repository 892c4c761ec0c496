//! Code generation drift check: `proto/` and the committed prost code in `src/protocol/grpc/` must
//! agree.
//!
//! The generated Rust is committed, as `src/logmill_capnp.rs` is, so that a build needs nothing
//! but cargo and a reader can open the types the server decodes. Unlike the Cap'n Proto check,
//! this one needs no compiler binary: `protox` is a protobuf compiler written in Rust, and it
//! feeds `prost-build` the descriptors `protoc` would. Both are dev-dependencies only, so the
//! server's own build never compiles a protobuf compiler.
//!
//! To rewrite the committed files after changing a `.proto`:
//! `LOGMILL_REGENERATE=1 cargo test -p logmill-codegen-check --test grpc_codegen_drift`.

#[path = "../../tests/common/temp_dir.rs"]
mod temp_dir;

use std::path::Path;

use temp_dir::TempDir;

/// (file prost-build writes, committed copy).
const OUTPUTS: [(&str, &str); 6] = [
    ("logmill.v1.rs", "src/protocol/grpc/logmill_v1.rs"),
    ("grpc.health.v1.rs", "src/protocol/grpc/health_v1.rs"),
    // OTLP logs (`proto/opentelemetry/`, vendored from opentelemetry-proto v1.6.0).
    (
        "opentelemetry.proto.collector.logs.v1.rs",
        "src/protocol/otlp/collector_logs_v1.rs",
    ),
    (
        "opentelemetry.proto.logs.v1.rs",
        "src/protocol/otlp/logs_v1.rs",
    ),
    (
        "opentelemetry.proto.common.v1.rs",
        "src/protocol/otlp/common_v1.rs",
    ),
    (
        "opentelemetry.proto.resource.v1.rs",
        "src/protocol/otlp/resource_v1.rs",
    ),
];

#[test]
fn generated_code_matches_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = TempDir::new("proto");
    let out = &dir.0;
    let descriptors = protox::Compiler::new([root.join("proto")])
        .expect("a protox compiler over proto/")
        .include_source_info(true)
        .open_files([
            "logmill.proto",
            "grpc/health/v1/health.proto",
            "opentelemetry/proto/collector/logs/v1/logs_service.proto",
            "opentelemetry/proto/logs/v1/logs.proto",
            "opentelemetry/proto/common/v1/common.proto",
            "opentelemetry/proto/resource/v1/resource.proto",
        ])
        .unwrap_or_else(|e| panic!("proto/ does not compile: {e}"))
        .file_descriptor_set();
    prost_build::Config::new()
        .out_dir(out)
        // Maps become BTreeMaps: a record's fields are then stored in one order, sorted by key,
        // whatever order the client's map iterated in.
        .btree_map(["."])
        .compile_fds(descriptors)
        .expect("prost-build failed");

    let regenerate = std::env::var_os("LOGMILL_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (generated, committed) in OUTPUTS {
        let generated = std::fs::read_to_string(out.join(generated))
            .unwrap_or_else(|e| panic!("prost-build wrote no {generated}: {e}"));
        let committed_path = root.join(committed);
        if regenerate {
            std::fs::write(&committed_path, &generated).unwrap();
            continue;
        }
        if std::fs::read_to_string(&committed_path).unwrap_or_default() != generated {
            stale.push(committed);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} out of date with proto/: run `LOGMILL_REGENERATE=1 cargo test -p \
         logmill-codegen-check --test grpc_codegen_drift`"
    );
}
