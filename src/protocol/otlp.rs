//! OTLP logs (OpenTelemetry): the vendored `proto/opentelemetry/` messages.

/// The prost code generated from `proto/opentelemetry/` (opentelemetry-proto v1.6.0), committed
/// and checked by `codegen-check/tests/grpc_codegen_drift.rs`. The modules nest as the protobuf
/// packages do (`opentelemetry.proto.logs.v1` is `proto::logs::v1`), because the generated code
/// names the other packages by relative paths (`super::super::common::v1::AnyValue`).
#[allow(clippy::all, missing_docs)]
#[rustfmt::skip]
pub mod proto {
    pub mod collector {
        pub mod logs {
            pub mod v1 {
                include!("otlp/collector_logs_v1.rs");
            }
        }
    }
    pub mod common {
        pub mod v1 {
            include!("otlp/common_v1.rs");
        }
    }
    pub mod logs {
        pub mod v1 {
            include!("otlp/logs_v1.rs");
        }
    }
    pub mod resource {
        pub mod v1 {
            include!("otlp/resource_v1.rs");
        }
    }
}
