//! Schema drift check: `schema/logmill.capnp` and the committed `src/logmill_capnp.rs` must agree.
//!
//! The generated Rust code is committed so that the project builds with nothing but cargo. This test
//! regenerates it with the `capnp` compiler (Debian package `capnproto`, which `.ci/run` installs)
//! and fails if the committed file differs. `scripts/gen-schema.sh` rewrites the committed file.
//!
//! Without a `capnp` binary (after `tests/common/tools.rs` tried to install it) the comparison
//! cannot run: under CI that is a failure; elsewhere the test prints `SKIPPED` and
//! `tests/environment.rs` fails unless `LOGMILL_ALLOW_SKIP=1`.

#[path = "../../tests/common/temp_dir.rs"]
mod temp_dir;
#[path = "../../tests/common/tools.rs"]
mod tools;

use std::path::Path;

use temp_dir::TempDir;

#[test]
fn generated_code_matches_schema() {
    let Some(capnp) = tools::require("generated_code_matches_schema", tools::capnp()) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = TempDir::new("schema");
    let out = &dir.0;
    capnpc::CompilerCommand::new()
        .capnp_executable(capnp)
        .src_prefix(root.join("schema"))
        .file(root.join("schema/logmill.capnp"))
        .output_path(out)
        .run()
        .expect("capnp compile failed");
    let generated = std::fs::read_to_string(out.join("logmill_capnp.rs")).unwrap();
    let committed_path = root.join("src/logmill_capnp.rs");
    if std::env::var_os("LOGMILL_REGENERATE").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        generated == committed,
        "src/logmill_capnp.rs is out of date with schema/logmill.capnp: run scripts/gen-schema.sh"
    );
}
