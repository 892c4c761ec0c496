//! Nothing to link: this package holds two tests, `tests/schema_drift.rs` (Cap'n Proto, with the
//! `capnp` compiler) and `tests/grpc_codegen_drift.rs` (protobuf, with the pure-Rust `protox`).
//! Each regenerates code that logmill commits (`src/logmill_capnp.rs`, `src/protocol/grpc/`)
//! and fails when the committed copy differs.
//!
//! They live here rather than in logmill's own `tests/` so that the code generators are
//! dev-dependencies of this package only: building or running the server, or one of its
//! examples, never compiles them. The root `Cargo.toml` makes this package a default workspace
//! member, so `cargo test` at the repository root still runs both checks.
